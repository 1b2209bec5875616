// An error the server answers as OpenAI-shaped JSON:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}} with an HTTP status.
// Request parsing and the context registry throw it; any other exception reaching the HTTP
// layer becomes a 500 with its message (kvz::Error from the engine: a 400, see http.cpp).
#pragma once

#include <string>

#include "core/error.h"

namespace kvz::server {

class ApiError : public Error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "")
      : Error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string type, param, code;
};

// 400 naming the parameter.
[[noreturn]] inline void bad_param(const std::string& param, const std::string& message,
                                   const std::string& code = "invalid_value") {
  throw ApiError(400, message, "invalid_request_error", param, code);
}

// 404 for a context id that is unknown (or deleted), naming the parameter that carried it.
[[noreturn]] inline void context_not_found(const std::string& id, const std::string& param) {
  throw ApiError(404, "no context '" + id + "'", "invalid_request_error", param, "context_not_found");
}

}  // namespace kvz::server
