package tend

// Calling a plugin loaded by the daemon (LoaderService) through the daemon's own connection.

import (
	"context"

	"google.golang.org/grpc/metadata"
)

// PluginHeader is the metadata key that makes the daemon forward a call to the loaded
// plugin it names, instead of serving the call itself.
const PluginHeader = "tend-plugin"

// ToPlugin returns ctx with the outgoing metadata "tend-plugin: <name>": a call made
// with it on a connection to the daemon goes to the plugin loaded under name, so one
// connection reaches the daemon and every plugin, and the client needs no plugin
// address (LoaderService.Get gives one, to dial directly):
//
//	kv := kvpb.NewKVClient(conn) // conn from tend.Dial
//	resp, err := kv.Get(tend.ToPlugin(ctx, "kv"), &kvpb.GetRequest{Key: "a"})
//
// The daemon forwards the call as it is, unary or streaming, without the tend-plugin
// header itself: the other metadata (on a unix socket, authorization too; over TCP the
// daemon keeps its token to itself), the deadline and cancellation go to the plugin,
// and the plugin's status, headers and trailers come back. An unknown plugin is
// codes.NotFound naming it; a plugin that is loaded but not serving (starting,
// restarting, exited) is codes.Unavailable. Server reflection asked with this context
// answers with the plugin's services, not the daemon's.
//
// Other outgoing metadata in ctx is kept. An earlier ToPlugin is replaced, not added
// to: the daemon reads only the first value, which would be the earlier name.
func ToPlugin(ctx context.Context, name string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	// FromOutgoingContext's result must not be written to; it may be shared.
	md = md.Copy()
	md.Set(PluginHeader, name)
	return metadata.NewOutgoingContext(ctx, md)
}
