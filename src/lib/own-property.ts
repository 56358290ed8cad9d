/**
 * Sets `key` as an own, enumerable property of `target`, whatever the key:
 * `target['__proto__'] = v` would replace the prototype instead (and the key
 * would vanish from `Object.keys` and JSON). For objects keyed by values
 * that come from outside (paths, metadata keys, JSON bodies).
 */
export function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}
