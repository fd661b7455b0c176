// Package actors will hold the daemons' protoactor-go actors (scanner,
// seeder, publisher, syncer, downloader, installer, builder, gateway) and the
// two supervision trees. The install engine they will drive is package
// engine; nothing here yet.
package actors
