# One static Go binary of ours (workflow-controller, argoexec, coredns) on the Debian base. The
# pod specs that use these images name the command, as Argo's and CoreDNS's own manifests do.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG BINARY
ARG USER=65532
COPY ${BINARY} /usr/local/bin/${BINARY}
USER ${USER}
