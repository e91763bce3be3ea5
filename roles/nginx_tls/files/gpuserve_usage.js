// gpuserve.vllm nginx_tls: reads the token usage of each API response for the key service.
//
// vLLM ends every response with a "usage" object (--enable-force-include-usage; in a stream,
// the last "data:" chunk). This body filter passes every buffer on unchanged and at once
// (no buffering, so streams keep their pace) and looks for that object in the last bytes it
// has seen; what it finds goes into $gpuserve_prompt_tokens, $gpuserve_completion_tokens and
// $gpuserve_model, which the usage log format writes when the request ends.
//
// njs runs each request in its own VM: the variables below are per request.
var tail = '';
var model = '';

function usage(r, data, flags) {
    r.sendBuffer(data, flags);
    var text = tail + data;
    if (model === '') {
        var m = /"model":\s*"([^"]{1,200})"/.exec(text);
        if (m) {
            model = m[1];
            r.variables.gpuserve_model = model;
        }
    }
    // the last usage object; vLLM writes it compact, other servers may put spaces after ':'
    var at = -1;
    var found;
    var re = /"usage":\s*\{/g;
    while ((found = re.exec(text)) !== null) {
        at = found.index;
    }
    if (at >= 0) {
        var rest = text.slice(at);
        var p = /"prompt_tokens":\s*(\d+)\s*[,}]/.exec(rest);
        var c = /"completion_tokens":\s*(\d+)\s*[,}]/.exec(rest);
        if (p && c) {
            r.variables.gpuserve_prompt_tokens = p[1];
            r.variables.gpuserve_completion_tokens = c[1];
        } else {
            // the object is cut at the end of this buffer: keep it whole for the next one
            tail = rest.slice(-1024);
            return;
        }
    }
    tail = text.slice(-256);
}

export default { usage };
