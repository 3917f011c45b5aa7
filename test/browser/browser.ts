import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium, installed by `node deploy/setup.mjs` (part of `npm test`). */
export const CHROMIUM = '/usr/bin/chromium';

export const CHROMIUM_INSTALL_HINT =
  `Chromium is not installed at ${CHROMIUM}: the browser tests need it. ` +
  'Run `node deploy/setup.mjs` as root or with passwordless sudo (it runs `apt-get install -y chromium`), or install it yourself with `sudo apt-get install -y chromium`.';

/**
 * Headless Chromium with a fresh profile in a temp folder (Playwright's own, removed on close); no network but this machine's
 * (no background networking, component updates, sync or QUIC). A missing Chromium fails the
 * test with how to install it: never a silent skip.
 */
export async function launchChromium(): Promise<{ browser: Browser; close(): Promise<void> }> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(CHROMIUM_INSTALL_HINT);
  // launch() gives Chromium a fresh temporary profile (user-data-dir) and deletes it on close.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}

/**
 * Where the tests save screenshots of the main pages: the README's (docs/screenshots/) with
 * UPDATE_SCREENSHOTS=1, else a temp folder, so an ordinary test run leaves the work tree clean.
 */
export const SCREENSHOT_DIR = process.env.UPDATE_SCREENSHOTS
  ? path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'docs', 'screenshots')
  : path.join(os.tmpdir(), 'meterline-screenshots');
