import { EventEmitter } from 'node:events';
/**
 * The in-process bus. A clustered deployment bridges it to PostgreSQL LISTEN/NOTIFY; the
 * interface stays the same. Listener errors are isolated so one bad subscriber cannot stop
 * a revoke from reaching the others.
 */
export class EventBus {
    emitter = new EventEmitter();
    constructor() {
        this.emitter.setMaxListeners(0);
    }
    publishRevoke(event) {
        this.emit('revoke', event);
    }
    publishNotice(notice) {
        this.emit('notice', notice);
    }
    on(name, fn) {
        const wrapped = (...args) => {
            try {
                fn(...args);
            }
            catch {
                // A subscriber's failure is its own; the bus keeps delivering.
            }
        };
        this.emitter.on(name, wrapped);
        return () => this.emitter.off(name, wrapped);
    }
    emit(name, ...args) {
        this.emitter.emit(name, ...args);
    }
}
//# sourceMappingURL=bus.js.map