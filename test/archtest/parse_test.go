package archtest

import (
	"reflect"
	"strings"
	"testing"
)

const goodTable = `# Architecture

Some prose with a | pipe.

` + "```" + `
| package | may import |
|---|---|
| ` + "`in-a-fence`" + ` | nonsense |
` + "```" + `

| package | holds | may import |
|---|:--|---|
| ` + "`version`" + ` | versions | std |
| ` + "`engine`, `cmd/tpm`" + ` | a \| b | std, ` + "`store`, `repo/...`, `github.com/anacrolix/torrent`, `golang.org/x/sys/unix`" + ` |
| ` + "`test/bench/...`" + ` | benchmarks | * |
| ` + "`store`" + ` | state | ` + "`go.etcd.io/bbolt`" + `

After the table.
`

func TestParseGood(t *testing.T) {
	tab, err := ParseTable("ARCH.md", goodTable)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{Line: 13, Name: "`version`", Packages: []Pattern{{Path: "version"}}, Allow: []Allow{{Kind: AllowStd, Written: "std"}}},
		{Line: 14, Name: "`engine`, `cmd/tpm`", Packages: []Pattern{{Path: "engine"}, {Path: "cmd/tpm"}}, Allow: []Allow{
			{Kind: AllowStd, Written: "std"},
			{Kind: AllowModule, Module: Pattern{Path: "store"}, Written: "`store`"},
			{Kind: AllowModule, Module: Pattern{Path: "repo", Tree: true}, Written: "`repo/...`"},
			{Kind: AllowExternal, Prefix: "github.com/anacrolix/torrent", Written: "`github.com/anacrolix/torrent`"},
			{Kind: AllowExternal, Prefix: "golang.org/x/sys/unix", Written: "`golang.org/x/sys/unix`"},
		}},
		{Line: 15, Name: "`test/bench/...`", Packages: []Pattern{{Path: "test/bench", Tree: true}}, Allow: []Allow{{Kind: AllowAny, Written: "*"}}},
		{Line: 16, Name: "`store`", Packages: []Pattern{{Path: "store"}}, Allow: []Allow{{Kind: AllowExternal, Prefix: "go.etcd.io/bbolt", Written: "`go.etcd.io/bbolt`"}}},
	}
	if !reflect.DeepEqual(tab.Rows, want) {
		t.Errorf("rows:\n got %+v\nwant %+v", tab.Rows, want)
	}
}

func TestPatternMatch(t *testing.T) {
	for _, tt := range []struct {
		pat  Pattern
		rel  string
		want bool
	}{
		{Pattern{Path: "repo"}, "repo", true},
		{Pattern{Path: "repo"}, "repo/repotest", false},
		{Pattern{Path: "repo", Tree: true}, "repo", true},
		{Pattern{Path: "repo", Tree: true}, "repo/repotest", true},
		{Pattern{Path: "repo", Tree: true}, "repository", false},
	} {
		if got := tt.pat.Match(tt.rel); got != tt.want {
			t.Errorf("%s matches %s: %v, want %v", tt.pat, tt.rel, got, tt.want)
		}
	}
}

// table makes a one-table document from rows of the form "first | last".
func table(rows ...string) string {
	s := "intro\n\n| package | holds | may import |\n|---|---|---|\n"
	for _, r := range rows {
		first, last, _ := strings.Cut(r, " | ")
		s += "| " + first + " | text | " + last + " |\n"
	}
	return s
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		doc  string
		want []string // every one must be in the error
	}{
		{"no table", "# nothing\n\n| a | b |\n|---|---|\n", []string{`X.md: no table whose header row's first cell is "package" and last cell is "may import"`}},
		{"two tables", table("`a` | std") + "\n" + table("`b` | std"), []string{"X.md:9: a second table", "(the first is at line 3)"}},
		{"no delimiter", "| package | may import |\n| `a` | std |\n", []string{"X.md:2: delimiter row: cell 1 is \"`a`\"; want dashes"}},
		{"bad delimiter", "| package | may import |\n|---|===|\n", []string{`X.md:2: delimiter row: cell 2 is "==="`}},
		{"no rows", "| package | may import |\n|---|---|\n\ntext\n", []string{"X.md:1: the table has no rows"}},
		{"cell count", table("`a` | std") + "| `b` | std |\n", []string{"X.md:6: row `b`: row has 2 cells; the header has 3"}},
		{"prose in may import", table("`engine` | all the above"), []string{`X.md:5: row ` + "`engine`" + `: may import: item 1 "all the above": want std, *`}},
		{"bare external name", table("`swarm` | std, anacrolix, bbolt"), []string{`X.md:5: row ` + "`swarm`" + `: may import: item 2 "anacrolix"`, `item 3 "bbolt"`}},
		{"mixed item", table("`cmd/tpmd` | `actors` and the domain packages"), []string{`may import: item 1 "` + "`actors`" + ` and the domain packages"`}},
		{"unbackticked package", table("engine | std"), []string{`X.md:5: row engine: package: item 1 "engine": want a backticked package path`}},
		{"empty package cell", "| package | may import |\n|---|---|\n|  | std |\n", []string{"X.md:3: package: empty cell"}},
		{"empty may import", table("`a` | "), []string{"X.md:5: row `a`: may import: empty cell"}},
		{"stray comma", table("`a` | std,, `b`"), []string{"may import: item 2 is empty (a stray comma?)"}},
		{"unterminated backtick", table("`a` | std, `b"), []string{"may import: unterminated `"}},
		{"dots in the middle", table("`a/.../b` | std"), []string{"package: item 1 `a/.../b`: ... may only end a path"}},
		{"only dots", table("`...` | std"), []string{"want a folder before /..."}},
		{"absolute path", table("`/engine` | std"), []string{"without a leading /"}},
		{"dot-dot", table("`a/../b` | std"), []string{`bad path element ".."`}},
		{"backticked std", table("`a` | `std`"), []string{"write std without backticks"}},
		{"external with dots", table("`a` | `github.com/anacrolix/...`"), []string{"drop the /..."}},
		{"star and more", table("`a` | *, std"), []string{"* allows anything; list nothing beside it"}},
		{"twice in a cell", table("`a` | std, `b`, `b`"), []string{"may import: `b` is listed twice"}},
		{"same package twice", table("`a` | std", "`a` | std"), []string{"X.md:6: row `a`: package: `a` overlaps `a` of the row at line 5"}},
		{"overlapping rows", table("`builder/...` | std", "`builder/buildertest` | std"), []string{"X.md:6: row `builder/buildertest`: package: `builder/buildertest` overlaps `builder/...` of the row at line 5"}},
		{"row without a leading pipe", table("`a` | std") + "`b` | text | std\n", []string{"X.md:6: the table ends here, but the line holds a |"}},
		{"every bad row", table("`a` | prose", "`b` | std", "`c` | more prose"), []string{"X.md:5: row `a`", "X.md:7: row `c`"}},
	} {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			_, err := ParseTable("X.md", tt.doc)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tab, err := ParseTable("X.md", table(
		"`low` | std",
		"`mid`, `tools/...` | std, `low`, `github.com/ext/lib`",
		"`top` | *",
		"`gone` | std",
		"`odd` | `nothing`",
	))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []Package{
		{ImportPath: "m/low", GoFiles: []string{"a.go"}, Imports: []string{"fmt", "os"}},
		{ImportPath: "m/mid", GoFiles: []string{"a.go"}, Imports: []string{"m/low", "github.com/ext/lib/sub", "github.com/extra"}},
		{ImportPath: "m/tools/x", GoFiles: []string{"a.go"}, Imports: []string{"m/top", "github.com/ext/library"}},
		{ImportPath: "m/top", GoFiles: []string{"a.go"}, Imports: []string{"m/low", "C", "example.com/x"}},
		{ImportPath: "m/odd", GoFiles: []string{"a.go"}},
		{ImportPath: "m/new", GoFiles: []string{"a.go"}},
		{ImportPath: "m/e2e", TestGoFiles: []string{"a_test.go"}, Imports: []string{"m/top"}},
		{ImportPath: "m/low", GoFiles: []string{"a.go"}, Imports: []string{"m/mid"}},
	}
	var got []string
	for _, err := range Check(tab, "m", pkgs) {
		got = append(got, err.Error())
	}
	want := []string{
		"X.md:8: row `gone`: `gone` is no package of m; remove it from the table",
		"X.md:9: row `odd`: may import `nothing`, which is no importable package of m (write std for the standard library)",
		"X.md:6: m/mid imports github.com/extra, which its row `mid`, `tools/...` does not allow (may import: std, `low`, `github.com/ext/lib`)",
		"X.md:6: m/tools/x imports m/top, which its row `mid`, `tools/...` does not allow (may import: std, `low`, `github.com/ext/lib`)",
		"X.md:6: m/tools/x imports github.com/ext/library, which its row `mid`, `tools/...` does not allow (may import: std, `low`, `github.com/ext/lib`)",
		"X.md: package m/new has no row; add `new` to the table",
		"X.md:5: m/low imports m/mid, which its row `low` does not allow (may import: std)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Check:\n got %q\nwant %q", got, want)
	}

	notes := Unused(tab, "m", pkgs)
	wantNotes := []string{
		"X.md:6: row `mid`, `tools/...` allows std, which none of its packages imports",
		"X.md:8: row `gone` allows std, which none of its packages imports",
		"X.md:9: row `odd` allows `nothing`, which none of its packages imports",
	}
	if !reflect.DeepEqual(notes, wantNotes) {
		t.Errorf("Unused:\n got %q\nwant %q", notes, wantNotes)
	}
}
