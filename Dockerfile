# Postactor in a container: Debian's Node 24 image, the build in one stage and only what runs in
# the next. Build and run:
#
#   docker build -t postactor .
#   docker run -d --name postactor -p 25:25 \
#     -v /srv/postactor/etc:/etc/postactor -v /srv/postactor/spool:/var/spool/postactor postactor
#
# /etc/postactor must hold main.cf and master.cf (inet_interfaces = all, say, so that smtpd
# listens on the container's address). The master runs in the foreground (start-fg) as the
# container's first process and, with maillog_file empty, logs to standard output (docker logs).
# SIGTERM (docker stop) stops it gracefully: deliveries in flight finish and are recorded.

FROM node:24-bookworm-slim AS build
WORKDIR /opt/postactor
COPY package.json package-lock.json tsconfig.json ./
# The sources first, so that `npm ci` (whose prepare script runs tsc) builds dist/.
COPY src ./src
COPY actors ./actors
COPY bin ./bin
COPY bench ./bench
COPY test ./test
RUN npm ci --no-audit --no-fund

FROM node:24-bookworm-slim
# ca-certificates: TLS to next hops (smtp_tls_CAfile) and MTA-STS policy fetches. perl-base,
# already in the image, runs the syslog relay when maillog_file is empty under `postactor start`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/postactor
COPY package.json package-lock.json ./
# Runtime dependencies only; lmdb and msgpackr-extract come with prebuilt binaries, so no
# install script (and no compiler) is needed. bin/postactor then uses the image's node.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /opt/postactor/dist ./dist
COPY bin ./bin
RUN ln -s /opt/postactor/bin/sendmail /usr/sbin/sendmail \
 && mkdir -p /etc/postactor /var/spool/postactor
VOLUME ["/var/spool/postactor"]
EXPOSE 25
HEALTHCHECK --interval=30s --timeout=5s CMD ["/opt/postactor/bin/postactor", "-c", "/etc/postactor", "status"]
STOPSIGNAL SIGTERM
CMD ["/opt/postactor/bin/postactor", "-c", "/etc/postactor", "start-fg"]
