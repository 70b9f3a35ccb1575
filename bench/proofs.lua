-- wrk script: sends each pre-generated DPoP proof once (the gateway refuses
-- replays). PROOFS names the file, one proof per line; TOKEN the access token.
local proofs = {}
local next_index = 1
local token = os.getenv("TOKEN")
for line in io.lines(os.getenv("PROOFS")) do
  proofs[#proofs + 1] = line
end

request = function()
  local proof = proofs[next_index]
  next_index = next_index + 1
  if proof == nil then
    proof = "exhausted"
  end
  return wrk.format(nil, nil, { ["Authorization"] = "DPoP " .. token, ["DPoP"] = proof })
end
