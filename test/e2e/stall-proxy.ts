/**
 * A TCP proxy in front of PostgreSQL that can make some of its connections stall: bytes stop
 * flowing both ways while the sockets stay open, as on a network partition with no reset.
 * Which connections stall is told by their first bytes (a cleartext StartupMessage carries
 * the client's application_name), so a node's event feed can stall while its store works.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

interface Pipe {
  client: Socket;
  upstream: Socket;
  first: Buffer | undefined;
  held: Array<[Socket, Buffer]>;
}

export class StallProxy {
  private readonly server: Server;
  private readonly pipes = new Set<Pipe>();
  private stalls: ((first: Buffer) => boolean) | undefined;

  private constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => this.accept(client));
  }

  static async start(target: { host: string; port: number }): Promise<{ proxy: StallProxy; port: number }> {
    const proxy = new StallProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    const address = proxy.server.address();
    if (!address || typeof address !== 'object') throw new Error('proxy has no port');
    return { proxy, port: address.port };
  }

  /** From now on, connections whose first bytes contain `marker` (open ones and new ones) pass nothing. */
  stall(marker: string): void {
    this.stalls = (first) => first.includes(marker);
  }

  /** Lets everything through again, held bytes first. */
  resume(): void {
    this.stalls = undefined;
    for (const p of this.pipes) {
      for (const [to, chunk] of p.held.splice(0)) if (!to.destroyed) to.write(chunk);
    }
  }

  async close(): Promise<void> {
    for (const p of this.pipes) {
      p.client.destroy();
      p.upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    const pipe: Pipe = { client, upstream, first: undefined, held: [] };
    this.pipes.add(pipe);
    const forward = (to: Socket) => (chunk: Buffer) => {
      pipe.first ??= chunk;
      if (this.stalls?.(pipe.first)) pipe.held.push([to, chunk]);
      else if (!to.destroyed) to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const end = (): void => {
      this.pipes.delete(pipe);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }
}
