// The server's context stores (src/server/store.h): the directory store's files, listing and
// removal; --store spellings and their errors. The Redis store against a real Redis is in
// tests/server/test_cluster.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/context_store.h"
#include "server/api_error.h"
#include "server/store.h"

using namespace kvz;
using namespace kvz::server;

namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path p;
  TempDir() {
    p = fs::temp_directory_path() / ("kvz-store-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                                     "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(p);
  }
  ~TempDir() { fs::remove_all(p); }
};

// A small valid context file: 2 layers, 1 KV head, d_head 16, three rows per head.
std::vector<uint8_t> context_bytes(uint64_t fingerprint, const std::string& info) {
  KvCache c(2, 1, 16);
  c.reserve_extra(3);
  std::vector<uint16_t> k(16, 7), v(16, 9);
  for (int it = 0; it < 3; ++it)
    for (int il = 0; il < 2; ++il) c.append(il, 0, k.data(), v.data(), it);
  StoredContext meta;
  meta.n_pos = 3;
  meta.ctx_ids = {1, 2, 3};
  meta.info = info;
  ModelIdentity id;
  id.fingerprint = fingerprint;
  return encode_context(id, meta, c);
}

void quiet(const std::string&) {}

}  // namespace

TEST(DirStore, WriteListReadRemove) {
  TempDir d;
  auto s = open_context_store("dir:" + d.p.string(), quiet);
  EXPECT_FALSE(s->shared());
  EXPECT_EQ(s->name(), "dir:" + d.p.string());
  EXPECT_TRUE(s->list().empty());  // creates the directory
  ASSERT_TRUE(fs::is_directory(d.p));
  { std::ofstream(d.p / "ctx-00000000000000aa.kvz.tmp") << "half a write"; }  // a crash's leftover

  const std::string id = "ctx-0123456789abcdef";
  const auto bytes = context_bytes(42, R"({"method":"kvzip"})");
  StoreRecord r;
  r.id = id;
  r.fingerprint = 42;
  EXPECT_TRUE(s->begin(r));
  std::string version = "x";
  ASSERT_TRUE(s->write(r, bytes, &version));
  EXPECT_EQ(version, "");
  EXPECT_FALSE(s->begin(r));  // the id is taken

  // On disk exactly as save_context writes it: <dir>/<id>.kvz, the encoded bytes.
  std::ifstream f(d.p / (id + ".kvz"), std::ios::binary);
  const std::vector<uint8_t> on_disk((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(on_disk, bytes);

  const auto listed = s->list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, id);
  EXPECT_EQ(listed[0].fingerprint, 42u);
  EXPECT_EQ(listed[0].state, "ready");
  EXPECT_EQ(listed[0].info, R"({"method":"kvzip"})");
  EXPECT_FALSE(fs::exists(d.p / "ctx-00000000000000aa.kvz.tmp"));  // removed by the listing

  ASSERT_TRUE(s->stat(id));
  EXPECT_FALSE(s->stat("ctx-ffffffffffffffff"));
  EXPECT_FALSE(s->stat("../../etc/passwd"));  // never a path
  EXPECT_EQ(s->read(id, &version).bytes(), bytes);
  EXPECT_TRUE(s->remove(id));
  EXPECT_FALSE(s->remove(id));
  EXPECT_TRUE(s->list().empty());
  EXPECT_THROW(s->read(id, &version), Error);
}

TEST(ContextStoreSpec, BadSpellingsNameTheProblem) {
  auto msg = [](const std::string& spec) {
    try {
      open_context_store(spec, quiet);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("s3://bucket").find("expected dir:PATH or redis://HOST:PORT/DB"), std::string::npos);
  EXPECT_NE(msg("dir:").find("empty"), std::string::npos);
  EXPECT_NE(msg("redis://127.0.0.1:70000/0").find("the port '70000'"), std::string::npos);
  EXPECT_NE(msg("redis://127.0.0.1:6379/x").find("the database number 'x'"), std::string::npos);
  EXPECT_NE(msg("redis://127.0.0.1:6379/0?chunk=12").find("chunk '12'"), std::string::npos);
  EXPECT_NE(msg("redis://127.0.0.1:6379/0?colour=red").find("unknown parameter 'colour'"), std::string::npos);
}

TEST(ContextStoreSpec, AnUnreachableRedisIsA503AtStart) {
  // Port 1 on loopback: nothing listens there, the connection is refused at once.
  try {
    open_context_store("redis://127.0.0.1:1/0", quiet);
    FAIL() << "connected to port 1";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
    EXPECT_NE(std::string(e.what()).find("cannot be reached"), std::string::npos) << e.what();
  }
}
