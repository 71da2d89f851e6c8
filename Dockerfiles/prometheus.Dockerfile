# prometheus: Debian's Prometheus for infra/compose.yaml, scraping the
# dashboard's /metrics; no registry image needed.
#
# With a registry:  docker build -f Dockerfiles/prometheus.Dockerfile -t colony-prometheus:bookworm .
# Without one:      Dockerfiles/build.sh --infra (passes the debootstrap base;
#   the RUN step below fetches the package from the Debian mirror).
#
# Build arguments:
#   BASE_IMAGE   Debian bookworm family   default debian:bookworm-slim
#
# The configuration is not baked in: compose mounts infra/prometheus/ on
# /etc/prometheus/colony (prometheus.yml and the alert rules beside it). The
# entrypoint writes COLONY_WEB_TOKEN into a file that prometheus.yml names as
# the scrape's bearer credentials (Prometheus does not expand variables in its
# configuration), then runs Prometheus as the package's `prometheus` user.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eu; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*; \
    install -d -o prometheus -g prometheus /prometheus /run/colony; \
    prometheus --version
COPY Dockerfiles/infra/prometheus-entrypoint.sh /usr/local/bin/colony-prometheus
USER prometheus
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/colony-prometheus"]
CMD ["--config.file=/etc/prometheus/colony/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.listen-address=:9090"]
