/**
 * Currencies and rounding. Amounts are decimal strings in the currency's major unit ("12.35" USD);
 * `toMinor` gives the integer count of minor units ("1235") that Stripe and `amountMinor` take.
 * Rounding happens once per invoice line, on the line's exact amount (never on tiers or rows).
 *
 * Minor units are ISO 4217's (the "E" column of the current list, plus funds codes). A code that is
 * not in the table is an error, never silently 2 decimals. Processors sometimes differ from ISO
 * (Stripe treats ISK, HUF, TWD and UGX amounts specially); that mapping belongs to the Stripe sync,
 * not here.
 */
import { Decimal } from '../../common/decimal.ts';
import { D, fmt, MAX_AMOUNT_CHARS, toDecimal } from './decimal.ts';
import { PricingError } from './errors.ts';

const ZERO_DECIMALS = ['BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'UYI', 'VND', 'VUV', 'XAF', 'XOF', 'XPF'];
const THREE_DECIMALS = ['BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND'];
const FOUR_DECIMALS = ['CLF', 'UYW'];
const TWO_DECIMALS = [
  'AED', 'AFN', 'ALL', 'AMD', 'ANG', 'AOA', 'ARS', 'AUD', 'AWG', 'AZN', 'BAM', 'BBD', 'BDT', 'BGN', 'BMD', 'BND', 'BOB', 'BOV',
  'BRL', 'BSD', 'BTN', 'BWP', 'BYN', 'BZD', 'CAD', 'CDF', 'CHE', 'CHF', 'CHW', 'CNY', 'COP', 'COU', 'CRC', 'CUP', 'CVE', 'CZK',
  'DKK', 'DOP', 'DZD', 'EGP', 'ERN', 'ETB', 'EUR', 'FJD', 'FKP', 'GBP', 'GEL', 'GHS', 'GIP', 'GMD', 'GTQ', 'GYD', 'HKD', 'HNL',
  'HTG', 'HUF', 'IDR', 'ILS', 'INR', 'IRR', 'JMD', 'KES', 'KGS', 'KHR', 'KPW', 'KYD', 'KZT', 'LAK', 'LBP', 'LKR', 'LRD', 'LSL',
  'MAD', 'MDL', 'MGA', 'MKD', 'MMK', 'MNT', 'MOP', 'MRU', 'MUR', 'MVR', 'MWK', 'MXN', 'MXV', 'MYR', 'MZN', 'NAD', 'NGN', 'NIO',
  'NOK', 'NPR', 'NZD', 'PAB', 'PEN', 'PGK', 'PHP', 'PKR', 'PLN', 'QAR', 'RON', 'RSD', 'RUB', 'SAR', 'SBD', 'SCR', 'SDG', 'SEK',
  'SGD', 'SHP', 'SLE', 'SOS', 'SRD', 'SSP', 'STN', 'SVC', 'SYP', 'SZL', 'THB', 'TJS', 'TMT', 'TOP', 'TRY', 'TTD', 'TWD', 'TZS',
  'UAH', 'USD', 'USN', 'UYU', 'UZS', 'VED', 'VES', 'WST', 'XCD', 'XCG', 'YER', 'ZAR', 'ZMW', 'ZWG',
];

/** ISO 4217 code → number of minor-unit digits. */
export const CurrencyMinorUnits: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries([
    ...TWO_DECIMALS.map((c) => [c, 2] as const),
    ...ZERO_DECIMALS.map((c) => [c, 0] as const),
    ...THREE_DECIMALS.map((c) => [c, 3] as const),
    ...FOUR_DECIMALS.map((c) => [c, 4] as const),
  ]),
);

export const RoundingModes = ['half_up', 'half_even', 'down', 'up'] as const;
/** half_up: ties away from zero (the default); half_even: ties to the even digit; down: toward zero; up: away from zero. */
export type RoundingMode = (typeof RoundingModes)[number];

const DECIMAL_ROUNDING: Record<RoundingMode, Decimal.Rounding> = {
  half_up: Decimal.ROUND_HALF_UP,
  half_even: Decimal.ROUND_HALF_EVEN,
  down: Decimal.ROUND_DOWN,
  up: Decimal.ROUND_UP,
};

/** The ISO 4217 code in upper case, e.g. "usd" → "USD"; throws CURRENCY_UNKNOWN for anything not in the table. */
export function normalizeCurrency(currency: string): string {
  const code = currency.toUpperCase();
  if (!Object.hasOwn(CurrencyMinorUnits, code)) {
    throw new PricingError('CURRENCY_UNKNOWN', `unknown currency "${currency}": expected an ISO 4217 code such as USD, EUR, JPY or KWD`);
  }
  return code;
}

/** Digits after the decimal point in the currency's minor unit: USD 2, JPY 0, KWD 3. */
export function minorUnits(currency: string): number {
  return CurrencyMinorUnits[normalizeCurrency(currency)] as number;
}

function parseAmount(amount: string) {
  const d = toDecimal(amount, MAX_AMOUNT_CHARS);
  if (!d) throw new PricingError('RATE_INPUT_INVALID', `amount "${amount}" is not a decimal number`);
  return d;
}

function checkMode(mode: string): RoundingMode {
  if (!(RoundingModes as readonly string[]).includes(mode)) throw new PricingError('RATE_INPUT_INVALID', `unknown rounding mode "${mode}": expected one of ${RoundingModes.join(', ')}`);
  return mode as RoundingMode;
}

/** `amount` rounded to the currency's minor unit, in major units with exactly that many decimals: "12.345" USD → "12.35". */
export function roundMoney(amount: string, currency: string, mode: RoundingMode = 'half_up'): string {
  const digits = minorUnits(currency);
  const rounded = parseAmount(amount).toDecimalPlaces(digits, DECIMAL_ROUNDING[checkMode(mode)]);
  return rounded.isZero() ? new D(0).toFixed(digits) : rounded.toFixed(digits);
}

/** `amount` (major units) as an integer string of minor units, rounded once: "12.345" USD → "1235", "-1.5" USD → "-150". */
export function toMinor(amount: string, currency: string, mode: RoundingMode = 'half_up'): string {
  const digits = minorUnits(currency);
  const rounded = parseAmount(amount).toDecimalPlaces(digits, DECIMAL_ROUNDING[checkMode(mode)]);
  return fmt(rounded.times(new D(10).pow(digits)));
}
