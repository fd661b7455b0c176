package archtest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// This file parses the "Packages" table of ARCHITECTURE.md. The grammar:
//
//   - the table's header row has `package` as its first cell and
//     `may import` as its last; it is followed by a delimiter row (|---|);
//   - every row has as many cells as the header;
//   - first cell: a comma-separated list of backticked package paths,
//     relative to the module root (`engine`, `cmd/tpm`); `dir/...` means dir
//     and every package below it;
//   - last cell: a comma-separated list of items, each one of
//     std (any standard library package), * (anything), a backticked path
//     of the module (`store`, `repo/...`), or a backticked external import
//     path prefix (`github.com/anacrolix/torrent` allows that package and
//     every package below it). An external path is one whose first element
//     holds a dot, as Go itself tells them apart from the standard library.
//
// A path may have only one row, and no two rows may cover the same package
// (`builder/...` and `builder/buildertest` would).

// Table is the parsed table.
type Table struct {
	File string // the name the errors use
	Rows []Row
}

// Row is one row of the table.
type Row struct {
	Line     int       // 1-based line in File
	Name     string    // the first cell as written, for messages
	Packages []Pattern // the first cell
	Allow    []Allow   // the last cell
}

// Pattern is a module-relative package path, or a folder and everything
// below it.
type Pattern struct {
	Path string // without "/..."
	Tree bool   // written as Path/...
}

// Match reports whether the module-relative package path rel is covered.
func (p Pattern) Match(rel string) bool {
	return rel == p.Path || p.Tree && strings.HasPrefix(rel, p.Path+"/")
}

func (p Pattern) String() string {
	if p.Tree {
		return p.Path + "/..."
	}
	return p.Path
}

// overlaps reports whether some package path would match both.
func (p Pattern) overlaps(q Pattern) bool {
	return p.Match(q.Path) || q.Match(p.Path)
}

// AllowKind is the kind of an item of the "may import" cell.
type AllowKind int

const (
	AllowStd      AllowKind = iota // std
	AllowAny                       // *
	AllowModule                    // a backticked path of the module
	AllowExternal                  // a backticked external import path prefix
)

// Allow is one item of the "may import" cell.
type Allow struct {
	Kind    AllowKind
	Module  Pattern // AllowModule
	Prefix  string  // AllowExternal
	Written string  // as written, for messages
}

func (a Allow) String() string { return a.Written }

const (
	firstHeader = "package"
	lastHeader  = "may import"
)

// ParseTable finds the table in the markdown src and parses it; file names
// src in errors. Every malformed row is reported (errors.Join), each with its
// line and cell.
func ParseTable(file string, src string) (*Table, error) {
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")

	// The header: outside code fences, a table line whose first and last
	// cells are the two names.
	header, fence := -1, ""
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(t, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
			fence = t[:3]
			continue
		}
		if !strings.HasPrefix(t, "|") {
			continue
		}
		cells, err := splitRow(t)
		if err != nil || len(cells) < 2 || cells[0] != firstHeader || cells[len(cells)-1] != lastHeader {
			continue
		}
		if header >= 0 {
			return nil, fmt.Errorf("%s:%d: a second table whose header is | %s | ... | %s | (the first is at line %d)", file, i+1, firstHeader, lastHeader, header+1)
		}
		header = i
	}
	if header < 0 {
		return nil, fmt.Errorf("%s: no table whose header row's first cell is %q and last cell is %q", file, firstHeader, lastHeader)
	}
	headerCells, _ := splitRow(strings.TrimSpace(lines[header]))
	ncells := len(headerCells)

	if header+1 >= len(lines) {
		return nil, fmt.Errorf("%s:%d: the header row is not followed by a delimiter row (|---|---|)", file, header+1)
	}
	delim, err := splitRow(strings.TrimSpace(lines[header+1]))
	if err != nil || len(delim) != ncells {
		return nil, fmt.Errorf("%s:%d: want a delimiter row of %d cells (|---|...) after the header", file, header+2, ncells)
	}
	for j, c := range delim {
		if !delimCell.MatchString(c) {
			return nil, fmt.Errorf("%s:%d: delimiter row: cell %d is %q; want dashes (---, :--, --:)", file, header+2, j+1, c)
		}
	}

	tab := &Table{File: file}
	var errs []error
	i := header + 2
	for ; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(t, "|") {
			break
		}
		row, err := parseRow(file, i+1, t, ncells)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tab.Rows = append(tab.Rows, row)
	}
	if i < len(lines) {
		if t := strings.TrimSpace(lines[i]); t != "" && strings.Contains(t, "|") {
			errs = append(errs, fmt.Errorf("%s:%d: the table ends here, but the line holds a | (a row must start with |)", file, i+1))
		}
	}
	if len(tab.Rows) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s:%d: the table has no rows", file, header+1))
	}

	// Each package path once, and no two rows over the same package.
	type seen struct {
		p   Pattern
		row Row
	}
	var all []seen
	for _, row := range tab.Rows {
		for _, p := range row.Packages {
			for _, s := range all {
				if s.row.Line == row.Line {
					if s.p.overlaps(p) {
						errs = append(errs, fmt.Errorf("%s:%d: row %s: package: `%s` and `%s` overlap", file, row.Line, row.Name, s.p, p))
					}
					continue
				}
				if s.p.overlaps(p) {
					errs = append(errs, fmt.Errorf("%s:%d: row %s: package: `%s` overlaps `%s` of the row at line %d; a package must have one row", file, row.Line, row.Name, p, s.p, s.row.Line))
				}
			}
			all = append(all, seen{p, row})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return tab, nil
}

var delimCell = regexp.MustCompile(`^:?-+:?$`)

// splitRow splits a table line (trimmed, starting with |) into its trimmed
// cells. A backslash-escaped \| is not a separator, as in GitHub's markdown.
func splitRow(line string) ([]string, error) {
	if !strings.HasPrefix(line, "|") {
		return nil, errors.New("a row must start with |")
	}
	var cells []string
	var cur strings.Builder
	for i := 1; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	// Text after the last | is one more cell (a row need not end with |).
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		cells = append(cells, rest)
	}
	return cells, nil
}

func parseRow(file string, line int, text string, ncells int) (Row, error) {
	cells, err := splitRow(text)
	if err != nil {
		return Row{}, fmt.Errorf("%s:%d: %v", file, line, err)
	}
	row := Row{Line: line}
	if len(cells) > 0 {
		row.Name = cells[0]
	}
	where := func(cell string) string {
		if row.Name == "" {
			return fmt.Sprintf("%s:%d: %s", file, line, cell)
		}
		return fmt.Sprintf("%s:%d: row %s: %s", file, line, row.Name, cell)
	}
	if len(cells) != ncells {
		return Row{}, fmt.Errorf("%s has %d cells; the header has %d", where("row"), len(cells), ncells)
	}

	var errs []error
	items, err := splitItems(cells[0])
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %v", where(firstHeader), err))
	}
	for n, it := range items {
		path, ok := backticked(it)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: item %d %q: want a backticked package path such as `engine` or `test/bench/...`", where(firstHeader), n+1, it))
			continue
		}
		p, err := parsePattern(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: item %d %s: %v", where(firstHeader), n+1, it, err))
			continue
		}
		for _, q := range row.Packages {
			if q == p {
				errs = append(errs, fmt.Errorf("%s: %s is listed twice", where(firstHeader), it))
			}
		}
		row.Packages = append(row.Packages, p)
	}

	items, err = splitItems(cells[ncells-1])
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %v", where(lastHeader), err))
	}
	for n, it := range items {
		a, err := parseAllow(it)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: item %d %q: %v", where(lastHeader), n+1, it, err))
			continue
		}
		for _, b := range row.Allow {
			if a.Kind == b.Kind && a.Module == b.Module && a.Prefix == b.Prefix {
				errs = append(errs, fmt.Errorf("%s: %s is listed twice", where(lastHeader), it))
			}
		}
		row.Allow = append(row.Allow, a)
	}
	if len(row.Allow) > 1 {
		for _, a := range row.Allow {
			if a.Kind == AllowAny {
				errs = append(errs, fmt.Errorf("%s: * allows anything; list nothing beside it", where(lastHeader)))
				break
			}
		}
	}
	if len(errs) > 0 {
		return Row{}, errors.Join(errs...)
	}
	return row, nil
}

// splitItems splits a cell at the commas outside backticks; every item must
// be non-empty.
func splitItems(cell string) ([]string, error) {
	if cell == "" {
		return nil, errors.New("empty cell")
	}
	var items []string
	start, inTick := 0, false
	for i := 0; i < len(cell); i++ {
		switch cell[i] {
		case '`':
			inTick = !inTick
		case ',':
			if !inTick {
				items = append(items, strings.TrimSpace(cell[start:i]))
				start = i + 1
			}
		}
	}
	if inTick {
		return nil, fmt.Errorf("unterminated ` in %q", cell)
	}
	items = append(items, strings.TrimSpace(cell[start:]))
	for n, it := range items {
		if it == "" {
			return nil, fmt.Errorf("item %d is empty (a stray comma?) in %q", n+1, cell)
		}
	}
	return items, nil
}

// backticked returns the text of an item that is exactly one code span.
func backticked(item string) (string, bool) {
	if len(item) < 2 || item[0] != '`' || item[len(item)-1] != '`' {
		return "", false
	}
	s := item[1 : len(item)-1]
	if s == "" || strings.Contains(s, "`") {
		return "", false
	}
	return s, true
}

var pathElem = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

var importElem = regexp.MustCompile(`^[A-Za-z0-9_~+-][A-Za-z0-9_.~+-]*$`)

// parsePattern checks a module-relative path, optionally ending in /...
func parsePattern(s string) (Pattern, error) {
	var p Pattern
	if rest, ok := strings.CutSuffix(s, "/..."); ok {
		p.Tree, s = true, rest
	}
	if s == "" || s == "..." {
		return Pattern{}, errors.New("want a folder before /... (use * for anything)")
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") {
		return Pattern{}, errors.New("want a path relative to the module root, such as `engine`, without a leading / or ./")
	}
	for _, e := range strings.Split(s, "/") {
		if e == "..." {
			return Pattern{}, errors.New("... may only end a path, as dir/...")
		}
		if !pathElem.MatchString(e) || e == "." || e == ".." {
			return Pattern{}, fmt.Errorf("bad path element %q", e)
		}
	}
	p.Path = s
	return p, nil
}

// parseAllow parses one item of the "may import" cell.
func parseAllow(item string) (Allow, error) {
	switch item {
	case "std":
		return Allow{Kind: AllowStd, Written: item}, nil
	case "*":
		return Allow{Kind: AllowAny, Written: item}, nil
	}
	s, ok := backticked(item)
	if !ok {
		return Allow{}, errors.New("want std, * or a backticked path (of the module: `store`, `repo/...`; external: `github.com/anacrolix/torrent`)")
	}
	if s == "std" || s == "*" {
		return Allow{}, fmt.Errorf("write %s without backticks", s)
	}
	first, _, _ := strings.Cut(s, "/")
	if !strings.Contains(first, ".") {
		p, err := parsePattern(s)
		if err != nil {
			return Allow{}, err
		}
		return Allow{Kind: AllowModule, Module: p, Written: item}, nil
	}
	// An external import path prefix.
	if strings.HasSuffix(s, "/...") {
		return Allow{}, errors.New("an external path already allows everything below it; drop the /...")
	}
	for _, e := range strings.Split(s, "/") {
		if !importElem.MatchString(e) {
			return Allow{}, fmt.Errorf("bad import path element %q", e)
		}
	}
	return Allow{Kind: AllowExternal, Prefix: s, Written: item}, nil
}
