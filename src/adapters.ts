import type { ProtocolAdapter } from './broker/adapter.js';
import type { ListenerName } from './core/config.js';
import { MysqlAdapter } from '../protocols/mysql/index.js';
import { PostgresAdapter } from '../protocols/postgres/index.js';
import { SshAdapter } from '../protocols/ssh/index.js';

/** The protocol adapters `gatehouse serve` starts, by listener name. */
export async function protocolAdapters(): Promise<Partial<Record<Exclude<ListenerName, 'api'>, ProtocolAdapter>>> {
  return { ssh: new SshAdapter(), postgres: new PostgresAdapter(), mysql: new MysqlAdapter() };
}
