// Package actors holds the daemons' protoactor-go actors and their
// supervision trees: the repository server's (server*.go: publisher,
// seeder, scanner) and the host's (host*.go: swarm, builder, installer,
// syncer, gateway, and an actor per request). Both trees share one
// plumbing (tree.go): a supervisor that starts its components in stages,
// says when all are up, keeps what a restarted component needs, and
// reports one it gave up on.
//
// Each actor owns its state and changes it only in Receive; messages
// between actors are plain values (messages/). Slow work runs on a
// goroutine that reports back with a message of a type private to the
// actor, stamped with the instance's token where a restarted actor must
// tell its predecessor's results from its own; what goes from one actor to
// another is declared in package messages (test/archtest checks it). The
// domain packages do the work (transaction, cache, query, engine, repo,
// swarm, ...): actors decide when, in what order, and who is told.
package actors
