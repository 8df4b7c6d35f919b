<?php
// A job endpoint in driveshaft's format: the example behind README's
// "Coming from driveshaft", and the endpoint the http protocol's tests run
// against. driveshaft's README shows a JSON request body; its code posts the
// same fields as a form: this reads either.
//
//     php -S 127.0.0.1:8080 -t examples/driveshaft
$request = $_POST;
if (!$request) {
    $request = json_decode(file_get_contents('php://input'), true) ?: [];
}
$format = $_POST ? 'form' : 'json';
$workload = isset($request['workload_base64'])
    ? base64_decode($request['workload_base64'])
    : ($request['workload'] ?? '');
$function = $request['function_name'] ?? '';
// The job's own name: what follows the last "::" of the function.
$name = substr(strrchr('::' . $function, ':'), 1);

function answer($ret, $text) {
    header('Content-Type: application/json');
    echo json_encode(['gearman_ret' => $ret, 'response_string' => $text]);
}

if (strncmp($name, 'Sum', 3) === 0) {
    answer(0, (string) array_sum(json_decode($workload, true)));
} elseif ($name === 'ShopStats' || $name === 'Newsfeed') {
    answer(0, "$name for $workload");
} elseif ($name === 'Reverse') {
    header('Content-Type: application/json');
    echo json_encode(['gearman_ret' => 0, 'response_base64' => base64_encode(strrev($workload))]);
} elseif ($name === 'Echo') {
    answer(0, json_encode([
        'format' => $format,
        'function_name' => $function,
        'job_handle' => $request['job_handle'] ?? null,
        'unique' => $request['unique'] ?? null,
        'workload' => $workload,
        'authorization' => $_SERVER['HTTP_AUTHORIZATION'] ?? null,
    ]));
} elseif ($name === 'Fail') {
    answer(1, "no such shop: $workload");
} else {
    http_response_code(404);
    echo "no job $name";
}
