package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestActorsSendOnlyMessages checks the rule of ARCHITECTURE.md's Actors
// section that the type system cannot: a type declared in package actors
// (a component's private message) is sent only to the actor itself, by
// the goroutines that report to it; whatever goes from one actor to
// another is declared in package messages (or is the wire protocol).
func TestActorsSendOnlyMessages(t *testing.T) {
	root, _ := module(t)
	dir := filepath.Join(root, "actors")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	for _, v := range CrossingPrivateMessages(fset, files) {
		t.Error(v)
	}
}

// sends maps the protoactor calls that send a message to the positions of
// their target and message arguments. Respond is not among them: an answer
// goes to whoever asked, which a component's own goroutines do through
// futures (the gateway's readers), and no call site says who that is.
var sends = map[string][2]int{
	"Send":                    {0, 1},
	"Request":                 {0, 1},
	"RequestFuture":           {0, 1},
	"RequestWithCustomSender": {0, 1},
	"SendRepeatedly":          {2, 3},
	"SendOnce":                {1, 2},
}

// CrossingPrivateMessages lists the sends, in the files of one package, of
// a message of a type declared in that package to a target other than the
// sender itself (self, or X.Self()).
func CrossingPrivateMessages(fset *token.FileSet, files []*ast.File) []string {
	local := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, s := range g.Specs {
					local[s.(*ast.TypeSpec).Name.Name] = true
				}
			}
		}
	}
	var out []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			at, ok := sends[sel.Sel.Name]
			if !ok || len(call.Args) <= at[1] {
				return true
			}
			if name := localType(call.Args[at[1]], local); name != "" && !isSelf(call.Args[at[0]]) {
				out = append(out, fmt.Sprintf("%s: %s of %s, a type of package actors, to another actor: declare what crosses actors in package messages",
					fset.Position(call.Pos()), sel.Sel.Name, name))
			}
			return true
		})
	}
	return out
}

// localType is the name of the package's own type that a message
// expression builds (&T{…} or T{…}), or "".
func localType(e ast.Expr, local map[string]bool) string {
	if u, ok := e.(*ast.UnaryExpr); ok && u.Op == token.AND {
		e = u.X
	}
	if c, ok := e.(*ast.CompositeLit); ok {
		if id, ok := c.Type.(*ast.Ident); ok && local[id.Name] {
			return id.Name
		}
	}
	return ""
}

// isSelf says whether a target is the sending actor: a variable named
// self, or X.Self(); or a future one of its own goroutines asked it with,
// held to be answered later in a variable or field named …Future.
func isSelf(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "self" || strings.HasSuffix(e.Name, "Future")
	case *ast.SelectorExpr:
		return strings.HasSuffix(e.Sel.Name, "Future")
	case *ast.CallExpr:
		sel, ok := e.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Self" && len(e.Args) == 0
	}
	return false
}

func TestCrossingPrivateMessagesFindsOne(t *testing.T) {
	src := `package actors
type up struct{}
type tick struct{}
func f(ctx C, root R, self P, other P) {
	ctx.Send(ctx.Parent(), &up{})
	root.Send(self, &tick{})
	ctx.Send(ctx.Self(), tick{})
	root.RequestFuture(other, &up{}, 0)
	ctx.Send(other, &messages.Ready{})
	ctx.Respond(&up{})
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := CrossingPrivateMessages(fset, []*ast.File{f})
	if len(got) != 2 || !strings.Contains(got[0], "x.go:5") || !strings.Contains(got[1], "x.go:8") {
		t.Fatalf("found %q, want the sends of up on lines 5 and 8", got)
	}
}
