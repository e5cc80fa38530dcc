package org.apache.kafka.common.utils;

/**
 * The one method of kafka-clients' AppInfoParser that connect-file 4.3.1 calls
 * ({@code version()} of its connectors), at the place 4.3.1 looked for it: kafka-clients
 * 4.4.0 moved the class to {@code org.apache.kafka.common.utils.internals}. Only here
 * because the registry this project builds from serves connect-file up to 4.3.1 (see
 * pom.xml); with connect-file 4.4.0 this file goes.
 */
public final class AppInfoParser {
    private AppInfoParser() {
    }

    public static String getVersion() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getVersion();
    }

    public static String getCommitId() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getCommitId();
    }
}
