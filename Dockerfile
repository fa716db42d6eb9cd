# syntax=docker/dockerfile:1
# Gatehouse, built the way README.md (Deploying: "Install from source") installs it: npm ci,
# npm pack (its prepack step runs npm run build), then the tarball installed with
# runtime dependencies only into /opt/gatehouse. The runtime stage is that directory on a
# slim Node base, run by an unprivileged user, with the data directory as a volume.
#
#   docker build -t gatehouse:local .                    # Node 24 LTS
#   docker build --build-arg NODE_VERSION=22 -t gatehouse:local .
ARG NODE_VERSION=24

# Build stage: the full Debian image has python3, make and g++ for native modules whose
# prebuilt binary cannot be fetched.
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm pack --pack-destination /tmp/pack
WORKDIR /opt/gatehouse
COPY deploy/install/package.json ./
RUN npm install --omit=dev --no-audit --no-fund /tmp/pack/gatehouse-*.tgz

FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production
# uid 10001: deploy/demo/init.mjs gives the gateway's demo secrets to this uid.
RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid gatehouse --home-dir /var/lib/gatehouse --no-create-home --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /var/lib/gatehouse/data /var/lib/gatehouse/certs /etc/gatehouse \
 && chown -R gatehouse:gatehouse /var/lib/gatehouse \
 && chmod 0700 /var/lib/gatehouse/data /var/lib/gatehouse/certs
COPY --from=build /opt/gatehouse /opt/gatehouse
COPY deploy/healthcheck.mjs /opt/gatehouse/healthcheck.mjs
COPY deploy/gatehouse.yaml /etc/gatehouse/gatehouse.yaml
ENV PATH=/opt/gatehouse/node_modules/.bin:$PATH
USER gatehouse:gatehouse
WORKDIR /var/lib/gatehouse
# master.key, audit.key (data/), the gateway CA and certificate (certs/), SQLite when no
# PostgreSQL store is configured.
VOLUME ["/var/lib/gatehouse"]
# API (HTTPS off loopback, also /healthz and the web vault), SSH, PostgreSQL, MySQL, LDAP
# (StartTLS) and LDAPS doors.
EXPOSE 8080 2222 15432 13306 13389 13636 8443
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "/opt/gatehouse/healthcheck.mjs"]
ENTRYPOINT ["gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.yaml"]
