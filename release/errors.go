package release

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a release file, placed where it is so that an
// editor can jump to it.
type Error struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Field is the dotted path of the field, as written in the file
	// ("waves[1].regions[0]"); empty for problems of the file as a whole.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Error formats the problem as FILE:LINE:COL: FIELD: message, leaving out
// the parts that are unknown (a spec validated after it left its file has
// no lines).
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is every problem found in a release file. Validation does not stop
// at the first one: a person fixing a file wants the whole list at once.
type Errors struct {
	List []Error `json:"errors"`
}

// Error lists the problems one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, p := range e.List {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// sort orders the problems as they appear in the file; problems without a
// line keep the order in which they were found.
func (e *Errors) sort() {
	sort.SliceStable(e.List, func(i, j int) bool {
		a, b := e.List[i], e.List[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// problem is a validation finding before it is placed in the file.
type problem struct {
	field string
	msg   string
	// at places the problem when the field's own value is not the place
	// (a key); zero means the position recorded for field.
	at position
}

type problems []problem

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, problem{field: field, msg: fmt.Sprintf(format, args...)})
}

func (p *problems) addAt(at position, field, format string, args ...any) {
	*p = append(*p, problem{field: field, msg: fmt.Sprintf(format, args...), at: at})
}
