package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

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

// streamedVerbs answer in parts of at most Chunk: their results grow with
// what is installed.
var streamedVerbs = []string{wire.VerbList, wire.VerbFiles, wire.VerbVerify, wire.VerbHistory}

// Streamed says whether the answer to verb comes in parts.
func Streamed(verb string) bool { return slices.Contains(streamedVerbs, verb) }

// Answer is the one dispatch of the read-only verbs (search, info, list,
// files, owns, verify, history, plan; status is the daemon's own), for the
// daemon and tpm --offline alike. A streamed verb passes its result to
// part, in parts of at most Chunk (a []wire.InstalledPackage,
// []wire.PackageFile, []wire.Problem or []wire.Transaction; at least one,
// each produced after the one before was taken), and returns no data; the
// others return their result, a plan as *wire.PlanResult. idx may be nil
// for the verbs that read only the receipts (list, files, owns, verify,
// history, the plan of a removal).
func Answer(e *engine.Engine, idx *index.Snapshot, req *wire.Request, prefix string, part func(any) error) (any, error) {
	switch req.Verb {
	case wire.VerbList:
		if len(req.Args) > 0 {
			return nil, errors.New("list takes no arguments: tpm list")
		}
		return nil, listEach(e, prefix, func(p []wire.InstalledPackage) error { return part(p) })
	case wire.VerbFiles:
		return nil, filesEach(e, prefix, req.Args, func(p []wire.PackageFile) error { return part(p) })
	case wire.VerbVerify:
		return nil, verifyEach(e, prefix, req.Args, func(p []wire.Problem) error { return part(p) })
	case wire.VerbHistory:
		return nil, historyEach(e, req.Args, func(p []wire.Transaction) error { return part(p) })
	case wire.VerbOwns:
		return Owns(e, prefix, req.Args)
	case wire.VerbPlan:
		if req.Options.Remove {
			return PlanRemoval(e, req, prefix)
		}
		if Undoing(req) {
			p, err := PlanUndo(e, req, prefix, Sources(idx, e.StateDir()))
			if err != nil {
				return nil, err
			}
			return &wire.PlanResult{Plan: p.Items()}, nil
		}
	}
	switch req.Verb {
	case wire.VerbSearch, wire.VerbInfo, wire.VerbPlan:
		if idx == nil {
			return nil, fmt.Errorf("%s needs the repository index, which only tpmd has: run it without --offline", req.Verb)
		}
		return answerFromIndex(e, idx, req, prefix)
	}
	return nil, fmt.Errorf("%q is not a query", req.Verb)
}

// answerFromIndex answers the verbs that read the index beside the
// receipts.
func answerFromIndex(e *engine.Engine, idx *index.Snapshot, req *wire.Request, prefix string) (any, error) {
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
	default: // plan
		installed, err := Receipts(e, prefix)
		if err != nil {
			return nil, err
		}
		p, err := PlanInstall(idx, installed, req.Args, InstallOptions(req))
		if err != nil {
			return nil, err
		}
		return &wire.PlanResult{Plan: p.Items(), Skipped: p.Held}, nil
	}
}

// RemoveRequest is the engine's removal a remove or autoremove request
// (or a plan of one) asks for.
func RemoveRequest(req *wire.Request, prefix string) (engine.RemoveRequest, error) {
	auto := req.Verb == wire.VerbAutoremove || req.Options.Autoremove
	switch {
	case req.Verb == wire.VerbAutoremove && len(req.Args) > 0:
		return engine.RemoveRequest{}, errors.New("autoremove takes no names (tpm remove --autoremove NAME... removes names too)")
	case len(req.Args) == 0 && !auto:
		return engine.RemoveRequest{}, errors.New("remove takes package names (tpm remove NAME...)")
	}
	return engine.RemoveRequest{Prefix: prefix, Names: req.Args, Cascade: req.Options.Cascade, Autoremove: auto}, nil
}

// PlanRemoval is the plan of a removal, made as the engine will make it.
func PlanRemoval(e *engine.Engine, req *wire.Request, prefix string) (*wire.PlanResult, error) {
	rr, err := RemoveRequest(req, prefix)
	if err != nil {
		return nil, err
	}
	cs, err := e.PrepareRemoval(context.Background(), rr)
	if err != nil {
		return nil, err
	}
	return &wire.PlanResult{Plan: PlanItems(cs)}, nil
}

// Reply answers a query the daemon was sent, as the replies it writes: a
// streamed verb's parts as items, a plan's items before its result, and
// the final reply, which is nil when send failed (the CLI left).
func Reply(e *engine.Engine, idx *index.Snapshot, req *wire.Request, defPrefix string, send func(*wire.Reply) error) *wire.Reply {
	prefix, err := Prefix(req, defPrefix)
	if err != nil {
		return wire.Failure(err.Error())
	}
	var gone error
	data, err := Answer(e, idx, req, prefix, func(part any) error {
		b, err := json.Marshal(part)
		if err != nil {
			return err
		}
		gone = send(&wire.Reply{Type: wire.ReplyItems, Data: b})
		return gone
	})
	switch {
	case gone != nil:
		return nil
	case err != nil:
		return wire.Failure(wire.OneLine(err.Error()))
	case Streamed(req.Verb):
		return &wire.Reply{Type: wire.ReplyResult}
	}
	if p, ok := data.(*wire.PlanResult); ok {
		if err := send(&wire.Reply{Type: wire.ReplyPlan, Plan: p.Plan}); err != nil {
			return nil
		}
	}
	res, err := wire.Result(data)
	if err != nil {
		return wire.Failure(err.Error())
	}
	return res
}
