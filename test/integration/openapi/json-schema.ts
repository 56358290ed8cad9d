/**
 * A small JSON Schema (2020-12) checker for the subset the generated
 * OpenAPI document uses, so tests can check values against the document
 * itself, not only against the zod schemas it came from: $ref into the
 * document, allOf/anyOf/oneOf, type, const, enum, properties, required,
 * additionalProperties, items, min/max length and items, pattern, and
 * format date-time.
 */
type Schema = Record<string, unknown>;

export function validateAgainst(doc: Schema, schema: Schema, value: unknown, at = '$'): string[] {
  if (typeof schema.$ref === 'string') return validateAgainst(doc, resolveRef(doc, schema.$ref), value, at);
  const errors: string[] = [];
  const fail = (msg: string) => errors.push(`${at}: ${msg}`);

  if (Array.isArray(schema.allOf)) for (const s of schema.allOf as Schema[]) errors.push(...validateAgainst(doc, s, value, at));
  if (Array.isArray(schema.anyOf)) {
    const results = (schema.anyOf as Schema[]).map((s) => validateAgainst(doc, s, value, at));
    if (!results.some((r) => r.length === 0)) fail(`matches none of anyOf: ${results.map((r) => r[0]).join(' | ')}`);
  }
  if (Array.isArray(schema.oneOf)) {
    const results = (schema.oneOf as Schema[]).map((s) => validateAgainst(doc, s, value, at));
    const ok = results.filter((r) => r.length === 0).length;
    if (ok !== 1) fail(ok === 0 ? `matches none of oneOf: ${results.map((r) => r[0]).join(' | ')}` : `matches ${ok} branches of oneOf`);
  }
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) fail(`is ${JSON.stringify(value)}, not ${JSON.stringify(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) fail(`${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => hasType(value, t))) {
      fail(`is ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value}, not ${types.join('|')}`);
      return errors;
    }
  }
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && value.length < schema.minLength) fail(`shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) fail(`longer than ${schema.maxLength}`);
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) fail(`does not match ${schema.pattern}`);
    if (schema.format === 'date-time' && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value)) fail('is not a date-time');
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) fail(`below ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) fail(`above ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) fail(`fewer than ${schema.minItems} items`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) fail(`more than ${schema.maxItems} items`);
    if (schema.items && typeof schema.items === 'object') value.forEach((v, i) => errors.push(...validateAgainst(doc, schema.items as Schema, v, `${at}[${i}]`)));
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) fail(`missing required field "${r}"`);
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) errors.push(...validateAgainst(doc, props[k]!, v, `${at}.${k}`));
      else if (schema.additionalProperties === false) fail(`has a field the document does not describe: "${k}"`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === 'object') errors.push(...validateAgainst(doc, schema.additionalProperties as Schema, v, `${at}.${k}`));
    }
  }
  return errors;
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    case 'integer':
      return Number.isInteger(value);
    default:
      return typeof value === type;
  }
}

/** Follows a local `#/a/b` reference; throws when it leads nowhere. */
export function resolveRef(doc: Schema, ref: string): Schema {
  if (!ref.startsWith('#/')) throw new Error(`only local references are used, got ${ref}`);
  let node: unknown = doc;
  for (const part of ref.slice(2).split('/')) {
    node = (node as Record<string, unknown> | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')];
    if (node === undefined) throw new Error(`dangling reference ${ref}`);
  }
  return node as Schema;
}

/** Every `$ref` in a document. */
export function allRefs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const v of node) allRefs(v, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else allRefs(v, out);
    }
  }
  return out;
}
