# tpm, the Torrent Package Manager. See README.md.
GO     ?= go
BIN    ?= bin

.PHONY: build test demo bench bench-swarm bench-scale fuzz lint clean

# Static, without cgo: nothing of tpm needs C, and a host daemon linked
# with libc (and libstdc++ for a uTP library tpm never turns on) held
# 4.4 MB more of it in memory while seeding (docs/scaling.md).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

# Every test, with the race detector; scenarios in test/ run the real tpm.
test: lint
	$(GO) test -race -count=1 ./...

# The whole mission on loopback in a scratch folder: a repository server, two
# clients, an install through the swarm, the second client fed by the first.
demo: build
	./examples/demo.sh $(BIN)

# Benchmarks: Go benchmarks, then tpm against the tools people would use.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./test/bench/install -tpm $(BIN)/tpm
	$(GO) run ./test/bench/server
	$(GO) run ./test/bench/client

# The swarm on a network of namespaces on this machine (root, iproute2, curl,
# aria2, transmission-cli): N client hosts and a repository with a thin
# uplink, tpm against plain HTTP, aria2c, transmission-cli and the lower
# bound, then the origin and a mirror.
# Writes test/bench/results/swarm.md and swarm.png.
# SWARMFLAGS passes flags (go run ./test/bench/swarm -h lists them).
# A model of it for fleets of 100 to 10,000: go run ./test/bench/swarmsim.
bench-swarm:
	$(GO) run ./test/bench/swarm $(SWARMFLAGS)

# What tpm costs as the number of packages grows (test/bench/results/scale.md).
# SCALEFLAGS passes flags, e.g. SCALEFLAGS=-baseline=main~1 for a before row.
bench-scale:
	$(GO) run ./test/bench/scale $(SCALEFLAGS)

# Each fuzz target for FUZZTIME (the seed corpora also run in make test).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./manifest
	$(GO) test -run '^$$' -fuzz '^FuzzCompare$$' -fuzztime $(FUZZTIME) ./version
	$(GO) test -run '^$$' -fuzz '^FuzzInspect$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./tarball
	$(GO) test -run '^$$' -fuzz '^FuzzInstall$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./engine
	$(GO) test -run '^$$' -fuzz '^FuzzTokenScanner$$' -fuzztime $(FUZZTIME) ./fifo

# gofmt, go vet, then staticcheck (a tool of go.mod: `go tool` builds it
# through the module proxy, nothing to install).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

clean:
	rm -rf $(BIN)
