import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compilePath, readPath, type PathSegment } from './jsonpath.ts';

function segmentsOf(path: string): PathSegment[] {
  const r = compilePath(path);
  if (!r.ok) throw new Error(`expected ${path} to compile: ${r.reason}`);
  return r.segments;
}

/** Quotes a key for `$['…']` / `$["…"]`: backslash-escapes the backslash and the quote. */
function quote(key: string, q: "'" | '"'): string {
  return `[${q}${key.replace(/\\/g, '\\\\').replace(new RegExp(q, 'g'), `\\${q}`)}${q}]`;
}

describe('compilePath', () => {
  it.each<[string, PathSegment[]]>([
    ['$.tokens', ['tokens']],
    ['$.a.b.c', ['a', 'b', 'c']],
    ['$.a[0]', ['a', 0]],
    ['$[0]', [0]],
    ['$.items[12].price', ['items', 12, 'price']],
    ['$.a[0][1]', ['a', 0, 1]],
    ['$._private', ['_private']],
    ['$.$ref', ['$ref']],
    ['$.x-request-id', ['x-request-id']],
    ['$.a1_b2', ['a1_b2']],
    ["$['key with spaces']", ['key with spaces']],
    ['$["k"]', ['k']],
    ["$['a.b']", ['a.b']],
    ["$['[0]']", ['[0]']],
    ["$['0']", ['0']],
    ["$['']", ['']],
    ["$['über größe']", ['über größe']],
    ["$['it\\'s']", ["it's"]],
    ['$["say \\"hi\\""]', ['say "hi"']],
    ["$['back\\\\slash']", ['back\\slash']],
    ["$['a'].b[2]['c d']", ['a', 'b', 2, 'c d']],
  ])('%s compiles to %j', (path, segments) => {
    expect(compilePath(path)).toEqual({ ok: true, segments });
  });

  it.each([
    ['tokens', '"tokens" must start with "$", e.g. $.tokens'],
    ['.tokens', '".tokens" must start with "$", e.g. $.tokens'],
    ['', '"" must start with "$", e.g. $.tokens'],
    ['$', '"$" selects the whole object; name a property, e.g. $.tokens'],
    ['$.', '"$.": expected a property name after "." at position 2'],
    ['$..a', '"$..a": expected a property name after "." at position 2'],
    ['$.1abc', '"$.1abc": expected a property name after "." at position 2'],
    ['$.a.', '"$.a.": expected a property name after "." at position 4'],
    ['$.a.b c', '"$.a.b c": unexpected " " at position 5'],
    ['$a', '"$a": unexpected "a" at position 1'],
    ['$.a*', '"$.a*": unexpected "*" at position 3'],
    ['$[abc]', '"$[abc]": bad bracket at position 1; use [0] or [\'name\']'],
    ['$.a[-1]', '"$.a[-1]": bad bracket at position 3; use [0] or [\'name\']'],
    ['$.a[*]', '"$.a[*]": bad bracket at position 3; use [0] or [\'name\']'],
    ['$.a[0', '"$.a[0": bad bracket at position 3; use [0] or [\'name\']'],
    ["$['open]", '"$[\'open]": bad bracket at position 1; use [0] or [\'name\']'],
    ["$['mixed\"]", '"$[\'mixed"]": bad bracket at position 1; use [0] or [\'name\']'],
    ['$[]', '"$[]": bad bracket at position 1; use [0] or [\'name\']'],
  ])('%j is rejected: %s', (path, reason) => {
    expect(compilePath(path)).toEqual({ ok: false, reason });
  });

  it('compiles any key written in quotes back to that key', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.constantFrom<"'" | '"'>("'", '"'), (key, q) => {
        expect(compilePath(`$${quote(key, q)}`)).toEqual({ ok: true, segments: [key] });
      }),
    );
  });
});

describe('readPath', () => {
  const doc = {
    tokens: 42,
    model: { name: 'gpt', 'key with spaces': 'spaced' },
    items: [{ price: '1.5' }, { price: '2.5' }],
    zero: 0,
    empty: '',
    no: false,
    nil: null,
    matrix: [
      [1, 2],
      [3, 4],
    ],
  };

  it.each<[string, unknown]>([
    ['$.tokens', 42],
    ['$.model.name', 'gpt'],
    ["$.model['key with spaces']", 'spaced'],
    ['$.items[1].price', '2.5'],
    ['$.matrix[1][0]', 3],
    ['$.zero', 0],
    ['$.empty', ''],
    ['$.no', false],
    ['$.nil', null],
    ['$.items[0]', { price: '1.5' }],
    // missing
    ['$.missing', undefined],
    ['$.model.missing', undefined],
    ['$.items[2].price', undefined],
    // reading through a primitive or null
    ['$.tokens.value', undefined],
    ['$.nil.x', undefined],
    ['$.model.name[0]', undefined],
    ['$.model.name.length', undefined],
    // an index on an object, a name on an array
    ['$.model[0]', undefined],
    ['$.items.length', undefined],
    ["$.items['0']", undefined],
    // inherited properties are not data
    ['$.toString', undefined],
    ['$.constructor', undefined],
    ["$['__proto__']", undefined],
    ['$.model.hasOwnProperty', undefined],
  ])('%s reads %j', (path, value) => {
    expect(readPath(doc, segmentsOf(path))).toEqual(value);
  });

  it.each<[unknown]>([[undefined], [null], [42], ['text'], [true]])('reads nothing from the root %j', (root) => {
    expect(readPath(root, ['a'])).toBeUndefined();
    expect(readPath(root, [0])).toBeUndefined();
  });

  it('reads back a value placed at any path, whatever the keys are', () => {
    const segment = fc.oneof(fc.string(), fc.nat({ max: 5 }));
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), fc.jsonValue(), (segments, value) => {
        // Build the nesting from the inside out; fromEntries makes even "__proto__" an own property.
        let root: unknown = value;
        for (const s of [...segments].reverse()) {
          if (typeof s === 'number') {
            const arr: unknown[] = new Array(s + 1).fill('filler');
            arr[s] = root;
            root = arr;
          } else root = Object.fromEntries([[s, root]]);
        }
        expect(readPath(root, segments)).toEqual(value);
        // and through a path written as text
        const text = '$' + segments.map((s) => (typeof s === 'number' ? `[${s}]` : quote(s, "'"))).join('');
        expect(readPath(root, segmentsOf(text))).toEqual(value);
      }),
    );
  });
});
