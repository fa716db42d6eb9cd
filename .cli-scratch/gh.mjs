import { main } from './src/cli/main.js';
main(process.argv).then((code) => { process.exitCode = code; });
