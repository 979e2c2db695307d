package com.example.greeting;

public class Greeting {
    public static String hello() {
        return "spring-shaped jar";
    }
}
