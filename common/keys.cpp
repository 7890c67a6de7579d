#include "common/keys.h"

#include "common/config_error.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace stampede::common {
namespace {

constexpr size_t kZ85KeyLength = 40;

bool isZ85Key(const std::string& text) {
  if (text.size() != kZ85KeyLength)
    return false;
  uint8_t binary[32];
  return zmq_z85_decode(binary, text.c_str()) != nullptr;
}

void writeFile(const std::filesystem::path& path, const std::string& text, mode_t mode) {
  // Created with its final mode: a secret is never readable by others, not even briefly.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    throw std::runtime_error(
        fmt::format("{}: cannot write: {}", path.string(), std::strerror(errno)));
  ::fchmod(fd, mode);
  const bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size());
  ::close(fd);
  if (!ok)
    throw std::runtime_error(
        fmt::format("{}: cannot write: {}", path.string(), std::strerror(errno)));
}

} // namespace

KeyPair generateKeyPair() {
  char public_key[41];
  char secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0)
    throw std::runtime_error(fmt::format("cannot make a CURVE key pair: {}", zmq_strerror(errno)));
  return {public_key, secret_key};
}

std::string publicFromSecret(const std::string& secret_z85) {
  char public_key[41];
  if (zmq_curve_public(public_key, secret_z85.c_str()) != 0)
    throw std::runtime_error("not a CURVE secret key");
  return public_key;
}

void writeKeyPair(const std::string& dir, const std::string& name, bool force) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error(fmt::format("{}: cannot create the directory: {}", dir, ec.message()));
  const fs::path secret_path = fs::path(dir) / (name + ".key");
  const fs::path public_path = fs::path(dir) / (name + ".pub");
  if (!force) {
    for (const auto& path : {secret_path, public_path})
      if (fs::exists(path))
        throw std::runtime_error(
            fmt::format("{} exists; pass --force to replace the key pair", path.string()));
  }
  const KeyPair pair = generateKeyPair();
  writeFile(secret_path,
            "# Stampede CURVE secret key: keep it readable by the service user only\n" +
                pair.secret_z85 + "\n",
            0600);
  writeFile(public_path, "# Stampede CURVE public key\n" + pair.public_z85 + "\n", 0644);
}

std::string readKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw ConfigError(path, 0, 0, "",
                      fmt::format("cannot read key file: {}", std::strerror(errno)));
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    auto start = line.find_first_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#')
      continue;
    auto end = line.find_last_not_of(" \t\r");
    std::string key = line.substr(start, end - start + 1);
    if (!isZ85Key(key))
      throw ConfigError(path, number, int(start) + 1, "",
                        "expected a 40-character Z85 CURVE key (made by `keygen`)");
    return key;
  }
  throw ConfigError(path, 0, 0, "", "no key in the file (made by `keygen`?)");
}

std::set<std::string> readPublicKeys(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::set<std::string> keys;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".pub")
      keys.insert(readKeyFile(it->path().string()));
  if (ec)
    throw ConfigError(dir, 0, 0, "",
                      fmt::format("cannot read the key directory: {}", ec.message()));
  if (keys.empty())
    throw ConfigError(dir, 0, 0, "", "no *.pub key files in the directory");
  return keys;
}

void makeCurveServer(zmq::socket_t& socket, const std::string& secret_z85) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, secret_z85);
  socket.set(zmq::sockopt::zap_domain, "stampede");
}

void makeCurveClient(zmq::socket_t& socket, const KeyPair& own,
                     const std::string& server_public_z85) {
  socket.set(zmq::sockopt::curve_serverkey, server_public_z85);
  socket.set(zmq::sockopt::curve_publickey, own.public_z85);
  socket.set(zmq::sockopt::curve_secretkey, own.secret_z85);
}

std::string handshakeFailure(uint16_t event, int32_t value) {
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
    return "its key is not among the accepted worker keys";
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
    switch (value) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
      return "security mismatch: one side uses keys and the other does not";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
    case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
      return "key mismatch: the peer does not hold the expected key";
    default:
      return fmt::format("protocol error 0x{:08x} (a damaged or foreign frame)", uint32_t(value));
    }
  }
  // No detail: typically a CURVE peer met a plain one before either could say more.
  return "handshake failed: security settings differ (keys on one side only?)";
}

} // namespace stampede::common
