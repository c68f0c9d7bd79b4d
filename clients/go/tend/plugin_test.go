package tend_test

import (
	"context"
	"reflect"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/tend-dev/tend/clients/go/tend"
)

func TestToPluginMetadata(t *testing.T) {
	base := metadata.AppendToOutgoingContext(context.Background(), "x-request", "r1")
	ctx := tend.ToPlugin(tend.ToPlugin(base, "kv"), "inner")
	md, _ := metadata.FromOutgoingContext(ctx)
	if got := md.Get(tend.PluginHeader); !reflect.DeepEqual(got, []string{"inner"}) {
		t.Errorf("%s = %q, want the last name alone", tend.PluginHeader, got)
	}
	if got := md.Get("x-request"); !reflect.DeepEqual(got, []string{"r1"}) {
		t.Errorf("x-request = %q, want the caller's metadata kept", got)
	}
	// The parent context is left as it was.
	if md, _ := metadata.FromOutgoingContext(base); len(md.Get(tend.PluginHeader)) != 0 {
		t.Errorf("ToPlugin changed its parent's metadata: %v", md)
	}
}
