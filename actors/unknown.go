package actors

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
)

// unknownMessages logs, once per type, a message an actor has no case
// for: one sent to the wrong actor, or a case forgotten, would otherwise
// vanish without a trace. protoactor's own lifecycle messages are not
// reported.
type unknownMessages map[string]bool

func (u unknownMessages) log(log *slog.Logger, component string, msg any) {
	switch msg.(type) {
	case actor.SystemMessage, actor.AutoReceiveMessage, *actor.Stopped:
		return
	}
	t := fmt.Sprintf("%T", msg)
	if u[t] {
		return
	}
	u[t] = true
	log.Warn("a message no case handles (reported once per type)", "component", component, "type", t)
}
