import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { feed } from './child-input.js';

describe('feed', () => {
  it('gives a client that closed its input a megabyte without an unhandled EPIPE, and the run still ends with its exit code', async () => {
    const errors: string[] = [];
    const code = await new Promise<number>((resolve) => {
      const child = execFile('sh', ['-c', 'exec 0<&-; sleep 0.2; exit 3'], (err) => resolve(typeof err?.code === 'number' ? err.code : 0));
      child.stdin?.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? ''));
      setTimeout(() => feed(child.stdin, 'x'.repeat(1 << 20)), 50);
    });
    expect(code).toBe(3);
    expect(errors).toEqual(['EPIPE']);
  });
});
