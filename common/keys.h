// CURVE key pairs for the control plane (ZeroMQ CURVE, libsodium underneath): generation,
// key files, and the socket options and handshake-failure reasons both sides share.
// Key files hold one Z85 key (40 characters); `#` comment lines are allowed.
#pragma once

#include <set>
#include <string>

#include <zmq.hpp>

namespace stampede::common {

struct KeyPair {
  std::string public_z85;
  std::string secret_z85;
};

KeyPair generateKeyPair();
std::string publicFromSecret(const std::string& secret_z85);

// Writes DIR/NAME.key (the secret, mode 0600) and DIR/NAME.pub. Refuses to overwrite either
// unless `force`. Throws std::runtime_error with a one-line reason.
void writeKeyPair(const std::string& dir, const std::string& name, bool force);
// Reads one key file. Throws ConfigError naming the file (and line) when it holds no valid key.
std::string readKeyFile(const std::string& path);
// Every *.pub in DIR. Throws ConfigError when DIR cannot be read or a file is invalid.
std::set<std::string> readPublicKeys(const std::string& dir);

// The master's side: a CURVE server holding its secret (whether it binds or connects).
void makeCurveServer(zmq::socket_t& socket, const std::string& secret_z85);
// A worker's side: a CURVE client that completes a handshake only with the holder of
// `server_public_z85`.
void makeCurveClient(zmq::socket_t& socket, const KeyPair& own,
                     const std::string& server_public_z85);

// Why a ZMTP handshake failed, from a socket monitor event, in words an operator can act on.
std::string handshakeFailure(uint16_t event, int32_t value);

} // namespace stampede::common
