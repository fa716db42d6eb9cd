import { isIP } from 'node:net';

/** True for addresses that never leave this machine: localhost, ::1, 127.0.0.0/8 (also IPv4-mapped). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^::ffff:/i, '');
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}
