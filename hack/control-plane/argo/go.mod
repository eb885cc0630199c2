// Wrapper module: only used to download github.com/argoproj/argo-workflows/v4 into the
// module cache (build.sh builds the commands from a copy of it).
module punchingfist.local/hack/argo

go 1.26.0
