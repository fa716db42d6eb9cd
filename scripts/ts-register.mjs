/**
 * Lets a Node process load the TypeScript sources directly (`node --import
 * ./scripts/ts-register.mjs file.ts`): what the test suite needs when it forks a data-path
 * worker (src/dataplane/pool.ts) from the sources instead of dist/. Development only; the
 * package runs the compiled dist/ files and never loads this.
 */
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
