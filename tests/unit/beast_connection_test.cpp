// BeastTlsConfig: the system's CA store, deferred for a run that names no https URL, is loaded by
// the first TLS connection (ready()), and only then.
#include "worker/beast_connection.h"

#include <catch2/catch.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace stampede::worker {
namespace {

int storedCertificates(BeastTlsConfig& config) {
  X509_STORE* store = SSL_CTX_get_cert_store(config.context.native_handle());
  return sk_X509_OBJECT_num(X509_STORE_get0_objects(store));
}

TEST_CASE("a deferred system CA store is loaded by ready(), not by the constructor",
          "[beast][tls]") {
  common::TlsSpec spec; // verify: true, no tls.ca: the system's store
  BeastTlsConfig eager(spec);
  const int system_count = storedCertificates(eager);
  if (system_count == 0) {
    WARN("this system's default CA store is empty: nothing to tell apart");
    return;
  }
  BeastTlsConfig deferred(spec, /*defer_system_ca=*/true);
  CHECK(storedCertificates(deferred) == 0);
  CHECK(deferred.system_ca_pending);
  CHECK(deferred.ready());
  CHECK(storedCertificates(deferred) == system_count);
  CHECK_FALSE(deferred.system_ca_pending);
  CHECK(deferred.ready()); // once: nothing loaded twice
  CHECK(storedCertificates(deferred) == system_count);
}

TEST_CASE("a deferral changes nothing when the store is not the system's", "[beast][tls]") {
  common::TlsSpec no_verify;
  no_verify.verify = false;
  BeastTlsConfig deferred(no_verify, /*defer_system_ca=*/true);
  CHECK_FALSE(deferred.system_ca_pending);
  CHECK(deferred.ready());
  CHECK(storedCertificates(deferred) == 0);

  common::TlsSpec bad_ca;
  bad_ca.ca_pem = "not a certificate";
  BeastTlsConfig broken(bad_ca, /*defer_system_ca=*/true);
  CHECK_FALSE(broken.ready());
  CHECK(broken.error.rfind("tls.ca: ", 0) == 0);
}

} // namespace
} // namespace stampede::worker
