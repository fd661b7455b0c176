package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// proceed asks whether to go on with a plan that does more than was asked,
// and says how to avoid the question when the answer is no.
func (c *command) proceed() error {
	ok, err := c.confirm("Proceed?")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("nothing done: not confirmed (answer y, or run with -y)")
	}
	return nil
}

// confirm asks a yes/no question unless --yes; the default is yes, and the
// end of input means no, so a script without -y never proceeds by accident.
func (c *command) confirm(question string) (bool, error) {
	if c.g.yes {
		return true, nil
	}
	fmt.Fprintf(c.env.Stderr, "%s [Y/n] ", question)
	line, err := c.in.ReadString('\n')
	if !isTerminal(c.env.Stdin) {
		// Nobody typed a newline: end the prompt's line so the log reads well.
		fmt.Fprintln(c.env.Stderr, strings.TrimSpace(line))
	}
	if err != nil && line == "" {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "", "y", "yes":
		return true, nil
	}
	return false, nil
}

func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
