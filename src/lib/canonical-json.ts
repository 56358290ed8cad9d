/**
 * JSON with object keys sorted at every level, so equal values hash equally.
 *
 * Written straight to a string: the audit chain canonicalises several
 * entries per request, and building sorted copies of every object first
 * cost a few per cent of the broker's CPU. The output is byte for byte what
 * `JSON.stringify` gives for a copy whose objects have their keys sorted —
 * which is what earlier versions computed, so existing audit hashes still
 * verify — including JavaScript's own property order for such a copy:
 * integer-like keys first, ascending by value, then the others sorted.
 */
export function canonicalJson(value: unknown): string {
  return write(value) as string;
}

const INDEX_KEY = /^(?:0|[1-9]\d*)$/;
/** Keys JavaScript orders as array indices (up to 2^32 - 2). */
const isIndexKey = (k: string) => INDEX_KEY.test(k) && Number(k) < 4294967295;

function orderedKeys(o: object): string[] {
  const keys = Object.keys(o).sort();
  let indices: string[] | undefined;
  for (const k of keys) if (isIndexKey(k)) (indices ??= []).push(k);
  if (!indices) return keys;
  indices.sort((a, b) => Number(a) - Number(b));
  return [...indices, ...keys.filter((k) => !isIndexKey(k))];
}

/** undefined where JSON.stringify leaves a value out (undefined, functions, symbols). */
function write(v: unknown): string | undefined {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i > 0 ? ',' : '') + (write(v[i]) ?? 'null');
    return `${out}]`;
  }
  let out = '{';
  let first = true;
  for (const k of orderedKeys(v)) {
    const s = write((v as Record<string, unknown>)[k]);
    if (s === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${s}`;
    first = false;
  }
  return `${out}}`;
}
