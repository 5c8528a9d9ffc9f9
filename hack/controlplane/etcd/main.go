// Command etcd is upstream's etcd server main, compiled from go.etcd.io/etcd/server/v3 by
// hack/controlplane/build.sh (its go.mod has relative replaces, so `go install` refuses it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
