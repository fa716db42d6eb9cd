/**
 * Distinguished names (RFC 4514) for one question: does this DN fall at or below the
 * resource's base DN? Names are parsed into RDNs with escapes undone, attribute types and
 * values compared case-insensitively (the naming attributes of directories — dc, ou, cn, uid,
 * o — match case-insensitively), multi-valued RDNs in any order. A DN that does not parse is
 * outside every base: the gateway refuses rather than guess how the target would read it.
 */

/** Short names for the OIDs a DN may spell its naming attributes with. */
const TYPE_NAMES: Record<string, string> = {
  '2.5.4.3': 'cn',
  '2.5.4.6': 'c',
  '2.5.4.7': 'l',
  '2.5.4.8': 'st',
  '2.5.4.10': 'o',
  '2.5.4.11': 'ou',
  '0.9.2342.19200300.100.1.1': 'uid',
  '0.9.2342.19200300.100.1.25': 'dc',
};

/** One RDN as a canonical string (`type=value` pairs sorted, joined by `+`). */
export type Rdn = string;

const HEX = /^[0-9a-fA-F]{2}$/;

/** The RDNs of a DN, most specific first, or undefined when it is not a valid DN. */
export function parseDn(dn: string): Rdn[] | undefined {
  const rdns: Rdn[] = [];
  if (dn.trim() === '') return rdns;
  let avas: string[] = [];
  let type = '';
  let value: number[] = [];
  let inValue = false;
  /** Value bytes up to here that were escaped, so trailing spaces escaped with `\ ` stay. */
  let keepTo = 0;
  const bytes = Buffer.from(dn, 'utf8');
  const finishAva = (): boolean => {
    if (!inValue) return false;
    const t = type.trim().toLowerCase();
    if (!/^(?:[a-z][a-z0-9-]*|[0-9]+(?:\.[0-9]+)*)$/.test(t)) return false;
    let end = value.length;
    while (end > keepTo && value[end - 1] === 0x20) end--;
    const v = Buffer.from(value.slice(0, end)).toString('utf8').toLowerCase();
    avas.push(`${TYPE_NAMES[t] ?? t}=${v}`);
    type = '';
    value = [];
    inValue = false;
    keepTo = 0;
    return true;
  };
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (!inValue) {
      if (c === 0x3d /* = */) {
        inValue = true;
        // Leading spaces of a value are not part of it.
        while (bytes[i + 1] === 0x20) i++;
      } else if (c === 0x2c || c === 0x2b || c === 0x3b || c === 0x5c) return undefined;
      else type += String.fromCharCode(c);
      continue;
    }
    if (c === 0x5c /* \ */) {
      const next = bytes[i + 1];
      if (next === undefined) return undefined;
      const pair = String.fromCharCode(next, bytes[i + 2] ?? 0);
      if (HEX.test(pair)) {
        value.push(parseInt(pair, 16));
        i += 2;
      } else {
        value.push(next);
        i += 1;
      }
      keepTo = value.length;
    } else if (c === 0x2b /* + */) {
      if (!finishAva()) return undefined;
    } else if (c === 0x2c /* , */ || c === 0x3b /* ; */) {
      if (!finishAva()) return undefined;
      rdns.push(avas.sort().join('+'));
      avas = [];
    } else if (c === 0x22 /* " */) {
      return undefined; // quoted values are RFC 2253's legacy; refused rather than half-parsed
    } else {
      value.push(c);
    }
  }
  if (!finishAva()) return undefined;
  rdns.push(avas.sort().join('+'));
  return rdns;
}

/** Whether `dn` (text, or RDNs from parseDn) is `base` or below it; false when it does not parse. */
export function isWithin(dn: string | readonly Rdn[], base: readonly Rdn[]): boolean {
  const rdns = typeof dn === 'string' ? parseDn(dn) : dn;
  if (!rdns || rdns.length < base.length) return false;
  const offset = rdns.length - base.length;
  return base.every((r, i) => rdns[offset + i] === r);
}
