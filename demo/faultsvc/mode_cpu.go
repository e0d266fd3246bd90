package main

import (
	"encoding/binary"
	"encoding/hex"
	"net/http"
)

// hashRounds makes one login cost a few milliseconds of CPU: a hand-rolled
// key-stretching loop of the kind that ends up in legacy services.
const hashRounds = 200_000

// hashPassword stretches password+salt through hashRounds rounds of a 64-bit
// mixing function. All the work is in this one function, so it is the top
// entry of any CPU profile of this mode.
//
//go:noinline
func hashPassword(password, salt string) [32]byte {
	var state [4]uint64
	for i := 0; i < len(password); i++ {
		state[i%4] = state[i%4]*31 + uint64(password[i])
	}
	for i := 0; i < len(salt); i++ {
		state[(i+1)%4] ^= uint64(salt[i]) << (i % 56)
	}
	for r := 0; r < hashRounds; r++ {
		for j := range state {
			x := state[j] + uint64(r) + 0x9e3779b97f4a7c15
			x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
			x = (x ^ (x >> 27)) * 0x94d049bb133111eb
			state[j] = x ^ (x >> 31) ^ state[(j+1)%4]
		}
	}
	var out [32]byte
	for j, v := range state {
		binary.LittleEndian.PutUint64(out[j*8:], v)
	}
	return out
}

func serveLogin(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	sum := hashPassword("hunter2-"+user, "pepper:"+user)
	writeJSON(w, map[string]string{"user": user, "token": hex.EncodeToString(sum[:8])})
}

func init() {
	registerMode(faultMode{
		name:    "cpu",
		summary: "CPU-heavy hashPassword; throttles under a CPU limit",
		setup: func(mux *http.ServeMux) loadSpec {
			mux.HandleFunc("/api/login", serveLogin)
			// Four back-to-back clients keep several goroutines hashing at once.
			return loadSpec{path: "/api/login?user=alice", workers: 4}
		},
	})
}
