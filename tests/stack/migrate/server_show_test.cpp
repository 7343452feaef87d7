// roamctl show's renderers: the JSON form holds every field with nulls where a value is
// unknown and escapes strings; the text form names keys, 4-tuples, bytes, the move and
// only nonzero counters, and says how many sessions were not listed.
#include "stack/migrate/server_show.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

using namespace roam;
using namespace roam::migrate;

ServerShow sample() {
  ServerShow show;
  show.key = "SERVERKEY=";
  show.pool = "POOLKEY=";
  show.address = "198.18.13.2";
  ShowChannel channel;
  channel.key = "CLIENTKEY=";
  channel.flow.remote = IpAddress::parse("198.18.11.2").value();
  channel.flow.remote_port = 40000;
  channel.age_ms = 61'500;
  channel.connections = 2;
  show.channels.push_back(channel);
  ShowSession session;
  session.id = 0x0123456789abcdefULL;
  session.kind = "echo";
  session.movable = true;
  session.age_ms = 1500;
  session.moved_in_ago_ms = 1200;
  session.changeover_ms = 4;
  ShowLeg leg;
  leg.role = "client";
  leg.flow.local = IpAddress::parse("198.18.13.2").value();
  leg.flow.local_port = 7000;
  leg.flow.remote = IpAddress::parse("198.18.11.2").value();
  leg.flow.remote_port = 40001;
  leg.bytes_in = 2048;
  leg.bytes_out = 3 * 1024 * 1024;
  session.legs.push_back(leg);
  show.sessions.push_back(session);
  ShowSession relay;
  relay.id = 7;
  relay.kind = "relay";
  relay.stays = "relay";
  show.sessions.push_back(relay);
  show.sessions_total = 5;
  show.counters = {{"sessions", 5}, {"acms_sent", 0}, {"sessions_imported", 1}};
  return show;
}

}  // namespace

TEST_CASE("roamctl show's JSON form holds every field") {
  std::string json = render_show_json(sample());
  CHECK(json.front() == '{');
  CHECK(json.back() == '}');
  CHECK(json.find(R"("server":{"key":"SERVERKEY=","pool":"POOLKEY=","address":"198.18.13.2","address6":null})") !=
        std::string::npos);
  CHECK(json.find(R"({"key":"CLIENTKEY=","address":"198.18.11.2","port":40000,"age_ms":61500,"connections":2})") !=
        std::string::npos);
  CHECK(json.find(R"("id":"0123456789abcdef","kind":"echo","age_ms":1500,"movable":true,"stays":null)") !=
        std::string::npos);
  CHECK(json.find(R"("remote_address":"198.18.11.2","remote_port":40001,"bytes_in":2048,"bytes_out":3145728)") !=
        std::string::npos);
  CHECK(json.find(R"("last_move":{"ago_ms":1200,"changeover_ms":4})") != std::string::npos);
  // Unknown age and no move: nulls; not movable: why.
  CHECK(json.find(R"("kind":"relay","age_ms":null,"movable":false,"stays":"relay","legs":[],"last_move":null)") !=
        std::string::npos);
  CHECK(json.find(R"("sessions_total":5,"counters":{"sessions":5,"acms_sent":0,"sessions_imported":1}})") !=
        std::string::npos);
}

TEST_CASE("roamctl show's JSON escapes strings") {
  ServerShow show;
  show.key = "a\"b\\c\n";
  CHECK(render_show_json(show).find(R"("key":"a\"b\\c\u000a")") != std::string::npos);
  CHECK(render_show_json(show).find(R"("pool":null)") != std::string::npos);
}

TEST_CASE("roamctl show's text form") {
  std::string text = render_show_text(sample());
  CHECK(text.rfind("server: SERVERKEY=\n  address: 198.18.13.2\n  pool: POOLKEY=\n", 0) == 0);
  CHECK(text.find("channel: CLIENTKEY=\n  endpoint: 198.18.11.2:40000\n  age: 1 min 1 s\n  connections: 2\n") !=
        std::string::npos);
  CHECK(text.find("session: 0123456789abcdef (echo)\n  client: 198.18.13.2:7000 <-> 198.18.11.2:40001, 2.0 KiB "
                  "received, 3.0 MiB sent\n  age: 1.5 s\n  last move: arrived 1.2 s ago, changeover 4 ms\n"
                  "  movable: yes\n") != std::string::npos);
  CHECK(text.find("  movable: no (relay)\n") != std::string::npos);
  CHECK(text.find("(3 more sessions not listed)") != std::string::npos);
  CHECK(text.find("sessions: 5") != std::string::npos);
  CHECK(text.find("acms_sent") == std::string::npos);  // zero: left out
}
