package query

import (
	"errors"
	"fmt"
	"path/filepath"

	"tpm/engine"
	"tpm/index"
	"tpm/messages/wire"
)

// Prefix is the prefix a request names, or def when it names none, in the
// clean absolute form receipts are keyed by.
func Prefix(req *wire.Request, def string) (string, error) {
	p := req.Prefix
	if p == "" {
		p = def
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("prefix %q is not an absolute path", p)
	}
	return engine.CleanPrefix(p)
}

// Answer answers one read-only request of the daemon (search, info, list,
// files, owns, verify, plan) about prefix, with the result data the wire
// protocol gives that verb.
func Answer(e *engine.Engine, idx *index.Snapshot, req *wire.Request, prefix string) (any, error) {
	switch req.Verb {
	case wire.VerbSearch:
		if len(req.Args) > 1 {
			return nil, errors.New("search takes one word: tpm search WORD")
		}
		installed, err := Receipts(e, prefix)
		if err != nil {
			return nil, err
		}
		word := "" // no word: every package
		if len(req.Args) == 1 {
			word = req.Args[0]
		}
		return Search(idx, installed, word), nil
	case wire.VerbInfo:
		if len(req.Args) != 1 {
			return nil, errors.New("info takes one package name: tpm info NAME")
		}
		installed, err := Receipts(e, prefix)
		if err != nil {
			return nil, err
		}
		return Info(idx, installed, req.Args[0])
	case wire.VerbList:
		return List(e, prefix)
	case wire.VerbFiles:
		return Files(e, prefix, req.Args)
	case wire.VerbOwns:
		return Owns(e, prefix, req.Args)
	case wire.VerbVerify:
		return Verify(e, prefix, req.Args)
	case wire.VerbPlan:
		installed, err := Receipts(e, prefix)
		if err != nil {
			return nil, err
		}
		p, err := PlanInstall(idx, installed, req.Args, req.Options.Upgrade, req.Options)
		if err != nil {
			return nil, err
		}
		return &wire.PlanResult{Plan: p.Items()}, nil
	}
	return nil, fmt.Errorf("%q is not a query", req.Verb)
}
