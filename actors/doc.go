// Package actors holds the daemons' protoactor-go actors and their
// supervision trees. Today: the repository server (server_*.go), a
// supervisor we own with the scanner, seeder and publisher under it
// (OneForOne, bounded restarts). Each actor drives a domain package (repo,
// swarm, publish) and never blocks in Receive: slow work runs on a goroutine
// that reports back with a message.
package actors
