module github.com/tend-dev/tend/clients/go

go 1.19

// The minimum versions the generated code needs, chosen to match Debian 12's
// golang-google-grpc-dev (1.33.3) and golang-google-protobuf-dev (1.28.1), which
// scripts/test-go builds against offline. With a module proxy, `go mod tidy`
// adds go.sum and the indirect requirements.
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
