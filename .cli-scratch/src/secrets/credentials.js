import { SealError } from './sealer.js';
/** The AAD that ties a sealed credential blob to the one resource it belongs to. */
export function credentialsAad(resourceName) {
    return `resource:${resourceName}:credentials`;
}
export function sealCredentials(sealer, resourceName, creds) {
    const plain = { login: creds.login };
    if (creds.password !== undefined)
        plain.password = creds.password;
    if (creds.privateKey !== undefined)
        plain.privateKey = creds.privateKey;
    return sealer.seal(JSON.stringify(plain), credentialsAad(resourceName));
}
export function openCredentials(sealer, resourceName, sealed) {
    const text = sealer.unsealString(sealed, credentialsAad(resourceName));
    let value;
    try {
        value = JSON.parse(text);
    }
    catch {
        throw new SealError('malformed', `sealed credentials of resource '${resourceName}' are not valid JSON`);
    }
    if (!isCredentials(value)) {
        throw new SealError('malformed', `sealed credentials of resource '${resourceName}' have an unexpected shape`);
    }
    return value;
}
function isCredentials(v) {
    if (typeof v !== 'object' || v === null)
        return false;
    const o = v;
    return (typeof o.login === 'string' &&
        (o.password === undefined || typeof o.password === 'string') &&
        (o.privateKey === undefined || typeof o.privateKey === 'string'));
}
//# sourceMappingURL=credentials.js.map