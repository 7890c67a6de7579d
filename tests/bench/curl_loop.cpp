// The floor of libcurl's multi_socket API on this machine (issue 12): a bare event loop, with
// none of Stampede around it, that keeps CONNS keep-alive GETs in flight against one URL and
// counts the responses. Its instructions per request (callgrind) and requests per CPU-second
// (throughput-style, against wrk) bound what the curl engine can reach; each option switches
// one libcurl setting the engine might pay for, so that its cost can be measured alone.
//
//   curl_loop URL [options]
//     --conns N          transfers in flight, one easy handle and connection each [50]
//     --requests N       stop after N responses [0: none]
//     --duration S       stop after S seconds [10; 0: none]
//     --shard N          easy handles per multi handle [0: one multi for all]
//     --asio-like        re-arm every socket after each event (one epoll_ctl per event, as a
//                        reactor with one-shot waits does) instead of leaving it registered
//     --del-on-remove    take a socket out of the epoll set when curl says CURL_POLL_REMOVE
//                        (as curl's own examples do) instead of leaving it idle in the set
//     --connect-to       each handle connects through an alias of its own (CURLOPT_CONNECT_TO
//                        and a CURLOPT_RESOLVE entry for it), so that each connection sits in a
//                        connection-cache bundle of its own and reuse finds it without a scan
//     --no-resolve       let curl resolve the host itself (its threaded resolver) instead of a
//                        CURLOPT_RESOLVE entry
//     --accept-encoding  CURLOPT_ACCEPT_ENCODING "gzip"
//     --ae-header        "Accept-Encoding: gzip" as a header line (implies --headers): the
//                        header without curl's decoding
//     --header-cb        a header callback that copies the head, as captures need
//     --headers          the bench scenario's request headers (User-Agent, X-Req per request)
//     --per-request      re-set per request what the engine sets per request (URL handle,
//                        method, header list, limits, timeout)
//     --signal           without CURLOPT_NOSIGNAL
//     --no-nodelay       without CURLOPT_TCP_NODELAY
//     --buffer N         CURLOPT_BUFFERSIZE [curl's default]
//     --maxconnects N    CURLMOPT_MAXCONNECTS [CONNS, or the shard size]
//     --timeout-ms N     CURLOPT_TIMEOUT_MS per transfer [0: none]
//
// Prints one line: requests, failures, wall seconds, CPU seconds, requests per CPU-second.
// Loopback only: the URL must name 127.0.0.0/8 or [::1] (it is a bench, not a tool).
// Not part of `make test`.
#include <curl/curl.h>

#include <sys/epoll.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string url;
  long conns = 50;
  long long requests = 0;
  double duration_s = 10;
  long shard = 0;
  bool asio_like = false;
  bool del_on_remove = false;
  bool connect_to = false;
  bool resolve = true;
  bool accept_encoding = false;
  bool ae_header = false;
  bool header_cb = false;
  bool headers = false;
  bool per_request = false;
  bool nosignal = true;
  bool nodelay = true;
  long buffer = 0;
  long maxconnects = 0;
  long timeout_ms = 0;
};

struct Shard;

// One transfer slot: an easy handle reused for every request.
struct Transfer {
  CURL* easy = nullptr;
  Shard* shard = nullptr;
  long id = 0;
  long long iteration = 0;
  std::string head; // with --header-cb
  std::string x_req;
  std::vector<curl_slist> nodes;            // with --headers: built in place, as the engine does
  std::string alias_resolve, alias_connect; // with --connect-to
  curl_slist alias_resolve_node{}, alias_connect_node{};
  std::string header_text;
};

struct Shard {
  CURLM* multi = nullptr;
  long long deadline_ms = -1; // curl's timer, absolute (ms since start); -1: none
  bool kick = false;          // a zero timeout: run curl on the next turn
};

struct Watch { // epoll data: one per descriptor curl watches
  Shard* shard;
  curl_socket_t fd;
  int events;      // EPOLLIN / EPOLLOUT wanted; 0: idle
  bool registered; // in the epoll set
};

Options options;
int epoll_fd = -1;
Clock::time_point started;
std::vector<Watch*> watches; // by descriptor
long long done = 0;
long long failed = 0;
long in_flight = 0; // easy handles in a multi
curl_slist* resolve_list = nullptr;
std::string target_port, target_address; // of the URL's host, for --connect-to
CURLU* url_handle = nullptr;

long long nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
}

// curl says CURL_POLL_REMOVE for a connection's socket at the end of every transfer and asks for
// it again when the next transfer reuses the connection: the watch stays (events 0) and the
// descriptor stays in the epoll set, idle, so that a request costs one epoll_ctl each way
// instead of a DEL and an ADD (--del-on-remove measures the difference).
void setEvents(Watch& watch, int events) {
  epoll_event ev{};
  ev.events = static_cast<uint32_t>(events) | (options.asio_like ? EPOLLONESHOT : 0u);
  ev.data.ptr = &watch;
  if (!watch.registered) {
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, watch.fd, &ev) == 0)
      watch.registered = true;
  } else if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, watch.fd, &ev) != 0 && errno == ENOENT) {
    // curl closed the descriptor since (the kernel dropped it) and opened a new one.
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, watch.fd, &ev);
  }
  watch.events = events;
}

int onSocket(CURL*, curl_socket_t fd, int what, void* userp, void*) {
  auto* shard = static_cast<Shard*>(userp);
  if (static_cast<size_t>(fd) >= watches.size())
    watches.resize(fd + 64, nullptr);
  Watch*& watch = watches[fd];
  if (!watch)
    watch = new Watch{shard, fd, 0, false};
  watch->shard = shard;
  if (what == CURL_POLL_REMOVE) {
    if (options.del_on_remove) {
      if (watch->registered)
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
      watch->registered = false;
      watch->events = 0;
    } else if (watch->events != 0) {
      setEvents(*watch, 0);
    }
    return 0;
  }
  int events =
      ((what & CURL_POLL_IN) ? int{EPOLLIN} : 0) | ((what & CURL_POLL_OUT) ? int{EPOLLOUT} : 0);
  if (!watch->registered || watch->events != events || options.asio_like)
    setEvents(*watch, events);
  return 0;
}

int onTimer(CURLM*, long timeout_ms, void* userp) {
  auto* shard = static_cast<Shard*>(userp);
  if (timeout_ms < 0) {
    shard->deadline_ms = -1;
    shard->kick = false;
  } else if (timeout_ms == 0) {
    shard->kick = true;
  } else {
    shard->deadline_ms = nowMs() + timeout_ms;
  }
  return 0;
}

size_t onWrite(char*, size_t size, size_t count, void*) {
  return size * count;
}

size_t onHeader(char* data, size_t size, size_t count, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t n = size * count;
  if (n >= 5 && std::memcmp(data, "HTTP/", 5) == 0)
    t->head.clear();
  t->head.append(data, n);
  return n;
}

void perRequest(Transfer& t) {
  if (options.headers) {
    t.x_req = "X-Req: " + std::to_string(t.id) + "-" + std::to_string(t.iteration);
    t.header_text = "User-Agent: stampede-bench";
    t.header_text.push_back('\0');
    size_t x = t.header_text.size();
    t.header_text += t.x_req;
    t.header_text.push_back('\0');
    size_t a = t.header_text.size();
    t.header_text += "Accept:";
    t.header_text.push_back('\0');
    size_t e = t.header_text.size();
    if (options.ae_header) {
      t.header_text += "Accept-Encoding: gzip";
      t.header_text.push_back('\0');
    }
    t.nodes.resize(options.ae_header ? 4 : 3);
    t.nodes[0] = {t.header_text.data(), &t.nodes[1]};
    t.nodes[1] = {t.header_text.data() + x, &t.nodes[2]};
    t.nodes[2] = {t.header_text.data() + a, options.ae_header ? &t.nodes[3] : nullptr};
    if (options.ae_header)
      t.nodes[3] = {t.header_text.data() + e, nullptr};
    curl_easy_setopt(t.easy, CURLOPT_HTTPHEADER, t.nodes.data());
  }
  if (options.per_request) {
    curl_easy_setopt(t.easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(t.easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(1 << 20));
    curl_easy_setopt(t.easy, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(t.easy, CURLOPT_TIMEOUT_MS, options.timeout_ms);
  }
  ++t.iteration;
}

void configure(Transfer& t) {
  CURL* e = t.easy;
  if (url_handle)
    curl_easy_setopt(e, CURLOPT_CURLU, url_handle);
  else
    curl_easy_setopt(e, CURLOPT_URL, options.url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &onWrite);
  if (options.header_cb) {
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &onHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
  }
  if (options.nosignal)
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  if (options.nodelay)
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  else
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 0L);
  if (options.buffer)
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, options.buffer);
  if (options.accept_encoding)
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");
  if (options.connect_to) {
    const std::string alias = "c" + std::to_string(t.id) + ".loop.invalid";
    t.alias_resolve = alias + ":" + target_port + ":" + target_address;
    t.alias_connect = "::" + alias + ":";
    t.alias_resolve_node = {t.alias_resolve.data(), nullptr};
    t.alias_connect_node = {t.alias_connect.data(), nullptr};
    curl_easy_setopt(e, CURLOPT_RESOLVE, &t.alias_resolve_node);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, &t.alias_connect_node);
  } else if (resolve_list) {
    curl_easy_setopt(e, CURLOPT_RESOLVE, resolve_list);
  }
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_setopt(e, CURLOPT_NOPROXY, "");
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, options.timeout_ms);
}

bool finished() {
  if (options.requests && done + failed >= options.requests)
    return true;
  return options.duration_s > 0 && nowMs() >= static_cast<long long>(options.duration_s * 1000);
}

void action(Shard& shard, curl_socket_t fd, int flags) {
  int running = 0;
  curl_multi_socket_action(shard.multi, fd, flags, &running);
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(shard.multi, &left)) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURL* easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    Transfer* t = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    curl_multi_remove_handle(shard.multi, easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status == 200)
      ++done;
    else
      ++failed;
    if (finished()) {
      --in_flight;
      continue;
    }
    perRequest(*t);
    curl_multi_add_handle(shard.multi, easy);
  }
}

bool parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "curl_loop: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--conns")
      options.conns = std::atol(value("--conns"));
    else if (a == "--requests")
      options.requests = std::atoll(value("--requests"));
    else if (a == "--duration")
      options.duration_s = std::atof(value("--duration"));
    else if (a == "--shard")
      options.shard = std::atol(value("--shard"));
    else if (a == "--asio-like")
      options.asio_like = true;
    else if (a == "--connect-to")
      options.connect_to = true;
    else if (a == "--del-on-remove")
      options.del_on_remove = true;
    else if (a == "--no-resolve")
      options.resolve = false;
    else if (a == "--accept-encoding")
      options.accept_encoding = true;
    else if (a == "--ae-header")
      options.ae_header = options.headers = true;
    else if (a == "--header-cb")
      options.header_cb = true;
    else if (a == "--headers")
      options.headers = true;
    else if (a == "--per-request")
      options.per_request = true;
    else if (a == "--signal")
      options.nosignal = false;
    else if (a == "--no-nodelay")
      options.nodelay = false;
    else if (a == "--buffer")
      options.buffer = std::atol(value("--buffer"));
    else if (a == "--maxconnects")
      options.maxconnects = std::atol(value("--maxconnects"));
    else if (a == "--timeout-ms")
      options.timeout_ms = std::atol(value("--timeout-ms"));
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "curl_loop: unknown option %s\n", a.c_str());
      return false;
    } else if (options.url.empty())
      options.url = a;
    else {
      std::fprintf(stderr, "curl_loop: a second URL %s\n", a.c_str());
      return false;
    }
  }
  if (options.url.empty()) {
    std::fprintf(stderr, "usage: curl_loop URL [--conns N] [--requests N] [--duration S] ...\n");
    return false;
  }
  if (options.conns < 1) {
    std::fprintf(stderr, "curl_loop: --conns must be at least 1\n");
    return false;
  }
  return true;
}

double cpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

} // namespace

int main(int argc, char** argv) {
  if (!parse(argc, argv))
    return 2;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  url_handle = curl_url();
  if (curl_url_set(url_handle, CURLUPART_URL, options.url.c_str(), 0) != CURLUE_OK) {
    std::fprintf(stderr, "curl_loop: bad URL %s\n", options.url.c_str());
    return 2;
  }
  char* host = nullptr;
  char* port = nullptr;
  curl_url_get(url_handle, CURLUPART_HOST, &host, 0);
  curl_url_get(url_handle, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  std::string h = host ? host : "";
  if (h.rfind("127.", 0) != 0 && h != "[::1]" && h != "localhost") {
    std::fprintf(stderr, "curl_loop: %s is not a loopback address\n", h.c_str());
    return 2;
  }
  std::string entry;
  target_port = port ? port : "80";
  target_address = h == "localhost" ? "127.0.0.1" : h;
  if (options.resolve && h.front() != '[') {
    entry = h + ":" + (port ? port : "80") + ":" + (h == "localhost" ? "127.0.0.1" : h);
    resolve_list = curl_slist_append(nullptr, entry.c_str());
  }
  curl_free(host);
  curl_free(port);

  struct rlimit nofile {};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);

  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  long per_shard = options.shard > 0 ? options.shard : options.conns;
  std::vector<Shard> shards((options.conns + per_shard - 1) / per_shard);
  for (auto& shard : shards) {
    shard.multi = curl_multi_init();
    curl_multi_setopt(shard.multi, CURLMOPT_SOCKETFUNCTION, &onSocket);
    curl_multi_setopt(shard.multi, CURLMOPT_SOCKETDATA, &shard);
    curl_multi_setopt(shard.multi, CURLMOPT_TIMERFUNCTION, &onTimer);
    curl_multi_setopt(shard.multi, CURLMOPT_TIMERDATA, &shard);
    curl_multi_setopt(shard.multi, CURLMOPT_MAXCONNECTS,
                      options.maxconnects ? options.maxconnects : per_shard);
  }
  std::vector<Transfer> transfers(options.conns);
  started = Clock::now();
  const double cpu0 = cpuSeconds();
  for (long i = 0; i < options.conns; ++i) {
    Transfer& t = transfers[i];
    t.id = i;
    t.easy = curl_easy_init();
    t.shard = &shards[i / per_shard];
    configure(t);
    perRequest(t);
    curl_multi_add_handle(t.shard->multi, t.easy);
    ++in_flight;
  }

  std::vector<epoll_event> events(1024);
  const long long hard_stop_ms =
      options.duration_s > 0 ? static_cast<long long>(options.duration_s * 1000) + 5000 : -1;
  while (in_flight > 0 && (hard_stop_ms < 0 || nowMs() < hard_stop_ms)) {
    long long wait_ms = 1000;
    const long long now = nowMs();
    for (auto& shard : shards) {
      if (shard.kick)
        wait_ms = 0;
      else if (shard.deadline_ms >= 0)
        wait_ms = std::min(wait_ms, std::max(0LL, shard.deadline_ms - now));
    }
    int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                       static_cast<int>(wait_ms));
    for (int i = 0; i < n; ++i) {
      auto* watch = static_cast<Watch*>(events[i].data.ptr);
      if (watch->events == 0)
        continue; // idle between transfers (a close by the server shows in the next one)
      int flags = 0;
      if (events[i].events & (EPOLLIN | EPOLLHUP))
        flags |= CURL_CSELECT_IN;
      if (events[i].events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
      if (events[i].events & EPOLLERR)
        flags |= CURL_CSELECT_ERR;
      action(*watch->shard, watch->fd, flags);
      if (options.asio_like && watch->events != 0)
        setEvents(*watch, watch->events); // a one-shot wait is armed again after each event
    }
    const long long after = nowMs();
    for (auto& shard : shards) {
      if (shard.kick || (shard.deadline_ms >= 0 && shard.deadline_ms <= after)) {
        shard.kick = false;
        shard.deadline_ms = -1;
        action(shard, CURL_SOCKET_TIMEOUT, 0);
      }
    }
  }
  const double cpu = cpuSeconds() - cpu0;
  const double wall = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf("requests=%lld failed=%lld wall_s=%.2f cpu_s=%.2f req_per_cpu_s=%.0f\n", done, failed,
              wall, cpu, cpu > 0 ? done / cpu : 0.0);
  for (auto& t : transfers) {
    curl_multi_remove_handle(t.shard->multi, t.easy);
    curl_easy_cleanup(t.easy);
  }
  for (auto& shard : shards)
    curl_multi_cleanup(shard.multi);
  curl_slist_free_all(resolve_list);
  curl_url_cleanup(url_handle);
  curl_global_cleanup();
  return 0;
}
