// The container's HEALTHCHECK (Dockerfile): GET /healthz on the gateway's API, exit 0 when it
// answers 200 {"ok":true}. Off loopback the API is HTTPS with the gateway certificate, which
// names 127.0.0.1; the check trusts the gateway CA from the data volume, nothing else.
//
//   GATEHOUSE_HEALTH_URL  default https://127.0.0.1:8080/healthz (http:// for a loopback API)
//   GATEHOUSE_HEALTH_CA   default /var/lib/gatehouse/certs/ca.pem
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const url = new URL(process.env.GATEHOUSE_HEALTH_URL ?? 'https://127.0.0.1:8080/healthz');
const caPath = process.env.GATEHOUSE_HEALTH_CA ?? '/var/lib/gatehouse/certs/ca.pem';
const TIMEOUT_MS = 4000;

function fail(message) {
  process.stderr.write(`healthcheck: ${url.href}: ${message}\n`);
  process.exit(1);
}

let options = { timeout: TIMEOUT_MS };
if (url.protocol === 'https:') {
  try {
    options = { ...options, ca: readFileSync(caPath) };
  } catch (e) {
    fail(`cannot read the gateway CA ${caPath} (${e.code ?? e.message}); the gateway writes it at its first start`);
  }
}
const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => (body += d));
  res.on('end', () => {
    if (res.statusCode !== 200) fail(`status ${res.statusCode}`);
    try {
      if (JSON.parse(body).ok !== true) fail(`unexpected body ${body.slice(0, 200)}`);
    } catch {
      fail(`not JSON: ${body.slice(0, 200)}`);
    }
    process.exit(0);
  });
});
req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
req.on('error', (e) => fail(e.message));
req.end();
