// Wrapper module: the sandbox ("pause") program, standard library only.
module punchingfist.local/hack/pause

go 1.26.0
