import type { ProtocolAdapter } from './broker/adapter.js';
import { DOORS, type DoorName } from '../protocols/registry.js';

/** The protocol adapters `gatehouse serve` starts, by listener name (from the door registry). */
export async function protocolAdapters(): Promise<Partial<Record<DoorName, ProtocolAdapter>>> {
  const loaded = await Promise.all(DOORS.map(async (d) => [d.name, await d.load()] as const));
  return Object.fromEntries(loaded);
}
