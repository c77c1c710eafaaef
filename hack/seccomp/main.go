// Writes the sandbox container's seccomp profile: containerd's own default for a container without
// capabilities (the profile `RuntimeDefault` gives the local node's containerd), plus the four calls the
// sandbox needs to isolate each program in namespaces of its own. Without CAP_SYS_ADMIN in the node's
// user namespace, mount works only inside a user namespace the caller made; what the addition opens is
// the kernel's user-namespace code, the price of isolation above rlimits in an unprivileged pod.
//
//	go run . > sandbox.json   (make seccomp-profile)
package main

import (
	"encoding/json"
	"os"

	"github.com/containerd/containerd/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// unshare: new user, mount, network, PID and IPC namespaces; mount, mount_setattr, umount2: a private,
// read-only tree with a tmpfs /tmp inside them.
var sandboxCalls = []string{"mount", "mount_setattr", "umount2", "unshare"}

func main() {
	noCapabilities := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	profile := seccomp.DefaultProfile(noCapabilities)
	profile.Syscalls = append(profile.Syscalls, specs.LinuxSyscall{Names: sandboxCalls, Action: specs.ActAllow})
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(profile); err != nil {
		panic(err)
	}
}
