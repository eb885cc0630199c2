# The pod sandbox image (containerd's sandbox image): hack/cluster/pause.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
