/**
 * The small JSONPath subset meters use: `$.a.b`, `$.a[0]`, `$['key with spaces']`, `$["k"]`.
 * Pure. `compilePath` returns the segments or an error message naming what is wrong.
 */
export type PathSegment = string | number;

export function compilePath(path: string): { ok: true; segments: PathSegment[] } | { ok: false; reason: string } {
  if (!path.startsWith('$')) return { ok: false, reason: `"${path}" must start with "$", e.g. $.tokens` };
  const segments: PathSegment[] = [];
  let i = 1;
  while (i < path.length) {
    const c = path[i];
    if (c === '.') {
      const m = /^[A-Za-z_$][\w$-]*/.exec(path.slice(i + 1));
      if (!m) return { ok: false, reason: `"${path}": expected a property name after "." at position ${i + 1}` };
      segments.push(m[0]);
      i += 1 + m[0].length;
    } else if (c === '[') {
      const rest = path.slice(i);
      const idx = /^\[(\d+)\]/.exec(rest);
      const quoted = /^\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]/.exec(rest);
      if (idx) {
        segments.push(Number(idx[1]));
        i += idx[0].length;
      } else if (quoted) {
        segments.push((quoted[1] ?? quoted[2] ?? '').replace(/\\(.)/g, '$1'));
        i += quoted[0].length;
      } else return { ok: false, reason: `"${path}": bad bracket at position ${i}; use [0] or ['name']` };
    } else return { ok: false, reason: `"${path}": unexpected "${c}" at position ${i}` };
  }
  if (segments.length === 0) return { ok: false, reason: `"${path}" selects the whole object; name a property, e.g. $.tokens` };
  return { ok: true, segments };
}

export function readPath(root: unknown, segments: readonly PathSegment[]): unknown {
  let cur: unknown = root;
  for (const s of segments) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (typeof s === 'number') {
      if (!Array.isArray(cur)) return undefined;
      cur = cur[s];
    } else {
      if (Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, s)) return undefined;
      cur = (cur as Record<string, unknown>)[s];
    }
  }
  return cur;
}
