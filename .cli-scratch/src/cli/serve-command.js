// Placeholder: the lead replaces this file with the real `gatehouse serve`.
export function registerServe(program) {
    program
        .command('serve')
        .description('run the gateway')
        .action(() => {
        throw new Error('not built yet');
    });
}
//# sourceMappingURL=serve-command.js.map