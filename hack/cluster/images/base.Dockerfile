# The Debian base of the cluster's images: a root filesystem made with mmdebstrap (images.sh),
# because no registry outside this machine can be reached to pull one.
FROM scratch
ADD rootfs.tar /
CMD ["/bin/bash"]
