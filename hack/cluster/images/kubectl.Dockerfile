# kubectl from our Kubernetes build, laid out as registry.k8s.io/kubectl is (runtime-image/Dockerfile
# copies /bin/kubectl from its KUBECTL_IMAGE).
FROM scratch
COPY kubectl /bin/kubectl
ENTRYPOINT ["/bin/kubectl"]
